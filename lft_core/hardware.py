"""Hardware: what this machine has and how to use it, decided at run time from the machine itself.

- `cpu_isa()` names the CPU's matrix instructions (AMX, AVX512-BF16, AVX512, AVX2), as every benchmark reports.
- `choose_compute()` picks the device and the training precision: bf16 only where it is native (a CUDA GPU of
  compute capability 8.0 or more, a CPU with AVX512-BF16 or AMX), fp16 autocast with a gradient scaler on older
  GPUs (whose `torch.cuda.is_bf16_supported()` also says True, counting emulation), fp32 elsewhere.
- `THREADS`, a governor of torch's intra-op threads. On a machine shared with other work (a second visitor of a
  Space, the app's own browser, CI running tests side by side), a team of as many threads as cores waits at every
  op for whichever thread the OS has descheduled, and training ran many times slower than on one thread
  (benchmarks/bench_threads.py); idle, all cores are faster. So the count is chosen from measured times of the
  work itself, compared side by side, and checked again while the work goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("lft_core")


# ---------------------------------------------------------------- what the CPU has


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_isa(flags: set[str] | None = None) -> str:
    """The widest matrix instructions of this CPU, as the benchmarks name them."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    if "avx512f" in flags:
        return "AVX512"
    if "avx2" in flags:
        return "AVX2"
    return platform.machine() or "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """The cores this process may run on (a container's affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def describe_machine() -> dict:
    """What a benchmark or a report names: CPU, ISA, cores, GPU."""
    found = {"cpu": cpu_name(), "isa": cpu_isa(), "cores": cores(), "torch_cpu_capability":
             torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
        found["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return found


# ---------------------------------------------------------------- device and precision


@dataclass(frozen=True)
class Compute:
    """Where and in what precision a run trains and scores."""

    device: str
    """'cuda' or 'cpu'"""
    precision: str
    """'bf16', 'fp16' (autocast, with a gradient scaler in training) or 'fp32'"""
    why: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        """The autocast context of this precision (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)

    def describe(self) -> str:
        return f"{self.precision} on {self.device}"


def native_bf16_cpu(flags: set[str] | None = None) -> bool:
    """bf16 matmuls in hardware: AVX512-BF16 or AMX. Elsewhere torch emulates bf16, many times slower than fp32."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags) and torch.backends.mkldnn.is_available()


def choose_compute(requested: str = "auto", quantized: bool = False, cuda: bool | None = None,
                   capability: tuple[int, int] | None = None, flags: set[str] | None = None) -> Compute:
    """The device and training precision for `requested` ('auto', 'bf16', 'fp16', 'fp32').

    'auto': on a CUDA GPU, bf16 where its compute capability is 8.0 or more (Ampere and later: bf16 tensor cores),
    else fp16 with a gradient scaler (a T4 or V100 reports bf16 as supported, but emulates it); on a CPU, bf16
    autocast where AVX512-BF16 or AMX make it native, else fp32. QLoRA keeps bitsandbytes' own compute dtype (fp32).
    The arguments after `quantized` exist so tests can fake a device."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    device = "cuda" if cuda else "cpu"
    if cuda and capability is None:
        capability = torch.cuda.get_device_capability(0)
    if requested != "auto":
        if requested == "bf16" and device == "cpu" and not native_bf16_cpu(flags):
            log.warning("bf16 was asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX): torch emulates "
                        "it, many times slower than fp32")
        if requested == "fp16" and device == "cpu":
            return Compute(device, "fp32", "fp16 needs a CUDA GPU; fp32 on this CPU")
        return Compute(device, requested, "as asked")
    if quantized:
        return Compute(device, "fp32", "QLoRA computes in bitsandbytes' dtype (fp32)")
    if cuda:
        major, minor = capability
        if (major, minor) >= (8, 0):
            return Compute(device, "bf16", f"native bf16 on this GPU (compute capability {major}.{minor})")
        return Compute(device, "fp16", f"compute capability {major}.{minor} has no native bf16: fp16 with a "
                                       f"gradient scaler")
    if native_bf16_cpu(flags):
        return Compute(device, "bf16", f"native bf16 on this CPU ({cpu_isa(flags)})")
    return Compute(device, "fp32", f"no native bf16 on this CPU ({cpu_isa(flags)})")


# ---------------------------------------------------------------- threads that fit the machine as it is now


@dataclass
class _Trial:
    seconds: float = 0.0
    work: float = 0.0
    calls: int = 0

    def cost(self) -> float:
        return self.seconds / max(self.work, 1e-12)


class ThreadGovernor:
    """Chooses torch's intra-op thread count from the measured cost of the work itself.

    Each timed call (a training micro-batch's forward and backward, an evaluation batch) reports its seconds and its
    work (tokens, padding included). The governor runs a few calls at each candidate count, alternating so that a
    change in the machine's load affects both alike, keeps the cheaper one, and tries again later: soon after a
    change of mind, rarely when the answer keeps being the same, and at once when the chosen count's cost drifts
    far from what it measured (another process started or ended). Kinds of call ('train', 'eval') are compared
    only with their own kind.

    A fixed count wins over all of this: LFT_THREADS or OMP_NUM_THREADS in the environment, or `fix()`.
    """

    TRIAL_CALLS = 3
    """calls per candidate in one comparison"""
    WARMUP_CALLS = 2
    """the first calls of a kind pay for one-off work (kernel selection, first allocations): not compared"""
    FIRST_RECHECK_S = 15.0
    MAX_RECHECK_S = 120.0
    CLEARLY_WORSE = 2.5
    """a candidate whose first call costs this many times the chosen count's is not tried again in that comparison
    (beside a busy process, a two-thread call cost many times a one-thread one: one such call is enough)"""
    DRIFT = 1.6
    """a chosen count whose cost grows or shrinks this many times over its measured cost is compared again"""
    MIN_CALL_S = 0.002
    """calls shorter than this say little about threads (timer and Python overhead); they are not counted"""

    def __init__(self):
        self.lock = threading.RLock()
        self.fixed: int | None = None
        self.candidates: list[int] = []
        self.choice: int | None = None
        self.kinds: dict[str, dict] = {}
        self.history: list[dict] = []
        self._configured = False

    # ---------------------------------------------------------------- setup

    def _configure(self) -> None:
        if self._configured:
            return
        self._configured = True
        given = os.environ.get("LFT_THREADS") or os.environ.get("OMP_NUM_THREADS")
        if given and given.strip().isdigit() and int(given) > 0:
            self.fixed = int(given)
        n = cores()
        # all cores, and one thread; on bigger machines also half of them
        self.candidates = sorted({n, 1, *([n // 2] if n >= 4 else [])}, reverse=True)
        self.choice = self.fixed or n
        torch.set_num_threads(self.choice)

    def fix(self, threads: int | None) -> None:
        """Use exactly `threads` from now on (None: choose again from measurements)."""
        with self.lock:
            self._configure()
            self.fixed = threads
            self.choice = threads or self.candidates[0]
            torch.set_num_threads(self.choice)
            self.kinds.clear()

    @property
    def adaptive(self) -> bool:
        self._configure()
        return self.fixed is None and len(self.candidates) > 1

    def candidates_now(self) -> list[int]:
        """The counts a comparison would try now (just the fixed one when the count is fixed)."""
        with self.lock:
            self._configure()
            return list(self.candidates) if self.adaptive else [self.choice]

    def prime(self, kind: str, threads: int, speedup: dict | None = None) -> None:
        """Start `kind` on `threads`, as a comparison made elsewhere (calibration) found faster; the governor
        checks again later, as after its own comparisons."""
        with self.lock:
            self._configure()
            if not self.adaptive:
                return
            state = self._state(kind)
            state.update(trials=None, order=[], decided=threads, reference=None, warmup=0, recent=_Trial(),
                         interval=self.FIRST_RECHECK_S, next_check=time.monotonic() + self.FIRST_RECHECK_S)
            self.history.append({"time": time.time(), "kind": kind, "threads": threads, "speedup": speedup or {},
                                 "by": "calibration"})
            self.choice = threads

    # ---------------------------------------------------------------- measuring

    def _state(self, kind: str) -> dict:
        state = self.kinds.get(kind)
        if state is None:
            state = self.kinds[kind] = {"trials": None, "order": [], "reference": None, "next_check": 0.0,
                                        "interval": self.FIRST_RECHECK_S, "recent": _Trial(), "decided": None,
                                        "warmup": self.WARMUP_CALLS}
        return state

    def _start_comparison(self, state: dict) -> None:
        state["trials"] = {n: _Trial() for n in self.candidates}
        # alternate: a, b, a, b ... starting with the current choice
        current = state["decided"] or self.choice
        first = [current] + [n for n in self.candidates if n != current]
        state["order"] = first * self.TRIAL_CALLS

    def threads_for_next_call(self, kind: str) -> int:
        with self.lock:
            self._configure()
            if not self.adaptive:
                return self.choice
            state = self._state(kind)
            if state["warmup"] > 0:
                return state["decided"] or self.choice
            if state["trials"] is None and time.monotonic() >= state["next_check"]:
                self._start_comparison(state)
            if state["trials"] is not None and state["order"]:
                return state["order"][0]
            return state["decided"] or self.choice

    @contextlib.contextmanager
    def timed(self, kind: str, work: float):
        """Time one call of `work` units (tokens); torch runs it with the thread count the governor picks."""
        threads = self.threads_for_next_call(kind)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        yield threads
        self.record(kind, threads, time.perf_counter() - start, work)

    def record(self, kind: str, threads: int, seconds: float, work: float) -> None:
        with self.lock:
            if not self.adaptive or seconds < self.MIN_CALL_S or work <= 0:
                return
            state = self._state(kind)
            if state["warmup"] > 0:
                state["warmup"] -= 1
                return
            trials = state["trials"]
            if trials is not None:
                if state["order"] and state["order"][0] == threads:
                    state["order"].pop(0)
                trial = trials[threads]
                trial.seconds, trial.work, trial.calls = trial.seconds + seconds, trial.work + work, trial.calls + 1
                chosen = state["decided"]
                if (trial.calls == 1 and chosen is not None and threads != chosen and state["reference"]
                        and trial.cost() > self.CLEARLY_WORSE * state["reference"]):
                    state["order"] = [n for n in state["order"] if n != threads]
                if not state["order"]:
                    self._decide(kind, state)
                return
            recent = state["recent"]
            recent.seconds, recent.work, recent.calls = recent.seconds + seconds, recent.work + work, recent.calls + 1
            reference = state["reference"]
            if recent.calls >= 4 and reference is None:  # primed without a cost of its own: this is it
                state["reference"], state["recent"] = recent.cost(), _Trial()
            elif recent.calls >= 4:
                ratio = recent.cost() / reference
                state["recent"] = _Trial()
                if ratio > self.DRIFT or ratio < 1 / self.DRIFT:
                    state["next_check"] = 0.0  # the machine changed: compare again now
                    state["interval"] = self.FIRST_RECHECK_S

    def _decide(self, kind: str, state: dict) -> None:
        trials = state["trials"]
        costs = {n: t.cost() for n, t in trials.items() if t.calls}
        best = min(costs, key=costs.get)
        same = best == state["decided"]
        state["interval"] = min(self.MAX_RECHECK_S, state["interval"] * 2) if same else self.FIRST_RECHECK_S
        state["next_check"] = time.monotonic() + state["interval"]
        state["trials"], state["decided"], state["reference"] = None, best, costs[best]
        state["recent"] = _Trial()
        self.history.append({"time": time.time(), "kind": kind, "threads": best,
                             "speedup": {n: costs[n] / costs[best] for n in costs}})
        del self.history[:-50]
        self.choice = best
        torch.set_num_threads(best)

    def summary(self) -> dict:
        """What the governor decided, for a report: the choices made and how much faster each was."""
        self._configure()
        return {"fixed": self.fixed, "candidates": self.candidates, "current": self.choice,
                "decisions": [dict(h) for h in self.history[-10:]]}


def call_work(shape) -> float:
    """What a forward call costs, in tokens, for comparing calls of different shapes: its padded tokens, plus about
    what a call costs on top of its tokens (Python, kernel launches, the optimizer's small step), in tokens."""
    texts, length = int(shape[0]), int(shape[-1])
    return texts * length + CALL_TOKENS


CALL_TOKENS = 128
"""A MiniLM forward and backward costs about as much on top of its tokens as this many tokens do (a rough
normaliser for the thread governor's comparisons of randomly shaped calls, not an estimate)."""


THREADS = ThreadGovernor()
"""The process's one governor: torch's thread count is a setting of the whole process."""


# ---------------------------------------------------------------- the allocator


_ALLOCATOR: list[bool] = []
MALLOC_KEEP_BYTES = 1 << 30
"""Freed blocks up to this size stay in the process's heap for the next call, instead of going back to the
system and faulting in again page by page (benchmarks/results/defaults.md)."""


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed activations for reuse: every training call allocates and frees the same
    large tensors, which glibc otherwise maps and unmaps each time (thousands of page faults a call). Once per
    process; a no-op off glibc or with LFT_MALLOC=0. Returns whether it was applied."""
    if not _ALLOCATOR:
        applied = False
        if os.environ.get("LFT_MALLOC", "1") != "0" and sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_threshold = -1, -3
                applied = bool(libc.mallopt(m_mmap_threshold, MALLOC_KEEP_BYTES)) and bool(
                    libc.mallopt(m_trim_threshold, MALLOC_KEEP_BYTES))
            except (OSError, AttributeError):  # musl, or no libc of that name
                applied = False
        _ALLOCATOR.append(applied)
    return _ALLOCATOR[0]
