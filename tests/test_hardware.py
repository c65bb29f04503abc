"""What the machine has and how it is used: the precision and device choice on faked GPUs and CPUs, and the thread
governor's choices from (faked) measured call times."""

import pytest
import torch

from lft_core import hardware
from lft_core.hardware import Compute, ThreadGovernor, choose_compute, cpu_isa


@pytest.mark.parametrize("capability, precision", [
    ((7, 5), "fp16"),   # T4 (Colab's free GPU): is_bf16_supported() says True, by emulation
    ((7, 0), "fp16"),   # V100
    ((8, 0), "bf16"),   # A100
    ((8, 6), "bf16"),   # A10, RTX 30xx
    ((9, 0), "bf16"),   # H100, H200
])
def test_gpus_get_bf16_only_where_it_is_native(capability, precision):
    compute = choose_compute("auto", cuda=True, capability=capability)
    assert (compute.device, compute.precision) == ("cuda", precision)
    assert f"{capability[0]}.{capability[1]}" in compute.why


@pytest.mark.parametrize("flags, isa, precision", [
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "AMX", "bf16"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512-BF16", "bf16"),
    ({"avx2", "avx512f"}, "AVX512", "fp32"),
    ({"avx2", "fma"}, "AVX2", "fp32"),
])
def test_cpus_get_bf16_only_with_avx512_bf16_or_amx(flags, isa, precision):
    assert cpu_isa(flags) == isa
    compute = choose_compute("auto", cuda=False, flags=flags)
    assert (compute.device, compute.precision) == ("cpu", precision)


def test_qlora_and_explicit_requests():
    assert choose_compute("auto", quantized=True, cuda=True, capability=(9, 0)).precision == "fp32"
    assert choose_compute("fp32", cuda=True, capability=(9, 0)).precision == "fp32"
    assert choose_compute("bf16", cuda=True, capability=(7, 5)).precision == "bf16"  # asked for: theirs
    assert choose_compute("fp16", cuda=False, flags={"avx2"}).precision == "fp32"   # fp16 needs a GPU


def test_fp16_trains_with_accelerates_gradient_scaler_and_bf16_with_our_autocast():
    from lft_core.train import precision_flags

    assert precision_flags("fp16", "cuda") == {"fp16": True, "bf16": False}
    assert precision_flags("bf16", "cuda") == {"fp16": False, "bf16": False}  # autocast around the loss only
    assert precision_flags("bf16", "cpu") == {"fp16": False, "bf16": False}
    assert Compute("cuda", "fp16").dtype is torch.float16 and Compute("cpu", "fp32").dtype is None


def test_fp16_autocast_wrapper_is_removed_after_training():
    """accelerate wraps an fp16 model's forward in autocast for good; train() gives the model its own forward back,
    so the reload check's fp32 logits are fp32."""
    from types import MethodType

    from accelerate.utils import convert_outputs_to_fp32

    from lft_core.train import _unwrap_autocast

    model = torch.nn.Linear(2, 2)
    model._original_forward = model.forward  # as accelerate's prepare_model wraps it for mixed precision
    wrapped = torch.autocast("cpu", dtype=torch.bfloat16)(model.forward.__func__)
    model.forward = MethodType(convert_outputs_to_fp32(wrapped), model)
    assert model(torch.ones(1, 2)).dtype == torch.float32
    _unwrap_autocast(model)
    assert "_original_forward" not in model.__dict__ and model.forward.__func__ is torch.nn.Linear.forward


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _governor(monkeypatch, cores=2):
    monkeypatch.delenv("LFT_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(hardware, "cores", lambda: cores)
    clock = _Clock()
    monkeypatch.setattr(hardware.time, "monotonic", clock)
    set_to = []
    monkeypatch.setattr(hardware.torch, "set_num_threads", set_to.append)
    return ThreadGovernor(), clock, set_to


def _calls(governor, cost_per_work: dict, n: int, work: float = 1000.0, kind: str = "train") -> list[int]:
    used = []
    for _ in range(n):
        threads = governor.threads_for_next_call(kind)
        used.append(threads)
        governor.record(kind, threads, cost_per_work[threads] * work, work)
    return used


def test_governor_keeps_all_cores_on_an_idle_machine(monkeypatch):
    governor, clock, _ = _governor(monkeypatch)
    used = _calls(governor, {2: 1e-4, 1: 1.6e-4}, 20)
    assert used[:2] == [2, 2]  # warm-up calls are not compared
    assert sorted(used[2:8]) == [1, 1, 1, 2, 2, 2] and used[2:8] == [2, 1, 2, 1, 2, 1]  # alternating comparison
    assert set(used[8:]) == {2} and governor.choice == 2


def test_governor_drops_to_one_thread_beside_a_busy_process_and_comes_back(monkeypatch):
    governor, clock, _ = _governor(monkeypatch)
    busy = {2: 2e-3, 1: 2e-4}  # a team of two waits for its descheduled thread at every op
    _calls(governor, busy, 8)
    assert governor.threads_for_next_call("train") == 1
    # the other process ends; one thread is hardly faster for it, so the next scheduled comparison finds out
    idle = {2: 1e-4, 1: 1.6e-4}
    assert set(_calls(governor, idle, 4)) == {1}
    clock.now += ThreadGovernor.FIRST_RECHECK_S + 1
    used = _calls(governor, idle, 6 + 4)
    assert used[-1] == 2 and governor.choice == 2
    assert [d["threads"] for d in governor.history] == [1, 2]


def test_a_comparison_beside_a_busy_process_tries_the_slow_count_once(monkeypatch):
    governor, clock, _ = _governor(monkeypatch)
    busy = {2: 2e-3, 1: 2e-4}
    _calls(governor, busy, 8)
    clock.now += ThreadGovernor.FIRST_RECHECK_S + 1
    assert _calls(governor, busy, 5) == [1, 2, 1, 1, 1]  # one call on two threads was enough to see it


def test_a_machine_that_gets_busy_is_noticed_within_a_few_calls(monkeypatch):
    governor, clock, _ = _governor(monkeypatch)
    _calls(governor, {2: 1e-4, 1: 1.6e-4}, 8)
    used = _calls(governor, {2: 2e-3, 1: 2e-4}, 4 + 6 + 2)  # drift after 4 calls, then compare
    assert used[-1] == 1


def test_governor_checks_again_later_and_less_often_when_nothing_changes(monkeypatch):
    governor, clock, _ = _governor(monkeypatch)
    costs = {2: 1e-4, 1: 1.6e-4}
    _calls(governor, costs, 8)
    assert governor.threads_for_next_call("train") == 2
    clock.now += ThreadGovernor.FIRST_RECHECK_S + 1
    assert _calls(governor, costs, 6) == [2, 1, 2, 1, 2, 1]  # compared again
    clock.now += ThreadGovernor.FIRST_RECHECK_S + 1  # the interval doubled: not yet
    assert set(_calls(governor, costs, 4)) == {2}
    clock.now += ThreadGovernor.FIRST_RECHECK_S
    assert 1 in _calls(governor, costs, 6)


def test_kinds_are_compared_apart_and_a_fixed_count_is_kept(monkeypatch):
    governor, clock, _ = _governor(monkeypatch)
    _calls(governor, {2: 2e-3, 1: 2e-4}, 8, kind="train")
    _calls(governor, {2: 1e-4, 1: 2e-4}, 8, kind="eval")
    assert governor.threads_for_next_call("train") == 1 and governor.threads_for_next_call("eval") == 2
    monkeypatch.setenv("LFT_THREADS", "2")
    fixed, _, set_to = _governor(monkeypatch)
    monkeypatch.setenv("LFT_THREADS", "2")
    fixed = ThreadGovernor()
    assert _calls(fixed, {2: 1.0, 1: 1e-6}, 10) == [2] * 10 and not fixed.adaptive


def test_a_wrapped_library_message_is_one_whole_line():
    from lft_core.errors import first_line

    wrapped = ValueError("Target modules {'query'} not found in the base model. Please check the target modules and\n"
                         "try again.\n\nDetails:\n  a long list")
    assert first_line(wrapped) == ("Target modules {'query'} not found in the base model. Please check the target "
                                   "modules and try again.")
    long = ValueError("First sentence here. " + "word " * 100)
    assert first_line(long, limit=50) == "First sentence here."
    assert first_line(ValueError("x" * 10 + " " + "y" * 400), limit=60).endswith(" …")
    assert first_line(KeyError()) == "KeyError"


def test_calibration_ends_at_a_stop_before_its_next_call(tiny_models):
    import threading

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lft_core.errors import StopRequested
    from lft_core.estimate import calibrate
    from lft_core.hardware import Compute

    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    stop = threading.Event()
    stop.set()
    with pytest.raises(StopRequested):
        calibrate(model, tokenizer, [(8, 16)] * 10, [(8, 16)], Compute("cpu", "fp32", "test"), stop=stop)
    found = calibrate(model, tokenizer, [(8, 16)] * 10, [(8, 16)], Compute("cpu", "fp32", "test"))
    assert found.train.flops_per_s > 0 and found.threads >= 1


def test_the_eta_leans_on_the_calibrated_step_until_steps_are_measured():
    from types import SimpleNamespace

    from lft_core.train import PRIOR_STEPS, _RunCallback

    callback = _RunCallback.__new__(_RunCallback)
    callback.args = SimpleNamespace(step_s=1.0, epochs=1, after_training_s=0.0)
    callback.result = SimpleNamespace(epochs=[])
    callback.validation_s, callback.start_step, callback.first_step_end = 0.0, 0, None
    import collections

    callback.step_ends = collections.deque(maxlen=31)
    state = SimpleNamespace(global_step=0, max_steps=100)
    assert callback.eta(state) == pytest.approx(100.0)  # nothing measured: the calibration alone
    callback.first_step_end = 0.0
    callback.step_ends.extend([0.0, 3.0])  # one measured step of 3 s (a busy moment)
    state.global_step = 2
    blended = callback.eta(state)
    weight = 1 / (1 + PRIOR_STEPS)
    assert blended == pytest.approx(98 * (weight * 3.0 + (1 - weight) * 1.0))
    callback.step_ends.extend(3.0 + 3.0 * i for i in range(1, 31))  # 30 more at 3 s: the measured pace wins
    state.global_step = 32
    assert callback.eta(state) > 68 * 2.5
