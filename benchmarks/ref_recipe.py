"""The reference contestant: the straightforward recipe courses teach, written as they write it.

Tokenize with padding="max_length", truncation=True; Trainer with default TrainingArguments (only epochs,
seed, learning rate and batch size set, to match the other contestant); peft LoRA with the same config;
evaluate the base with trainer.predict, train, save_pretrained, reload with
AutoPeftModelForSequenceClassification, evaluate again. Same data split as lft_core (it reuses load_data).

Prints one JSON line with its timings, accuracy and peak RSS."""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

import numpy as np
import torch
from peft import AutoPeftModelForSequenceClassification, LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from lft_core import RunConfig, load_data
from lft_core.methods import METHODS
from lft_core.models import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="bbc-news")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-train-samples", type=int)
    args = parser.parse_args()
    start = time.perf_counter()

    data = load_data(RunConfig(dataset=args.dataset, seed=args.seed, max_train_samples=args.max_train_samples))
    names = data["train"].features["label"].names
    source = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(source)

    def tokenize(batch):
        return tokenizer(batch["text"], padding="max_length", truncation=True, max_length=args.max_length)

    encoded = data.map(tokenize, batched=True)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})

    def accuracy(prediction) -> float:
        return float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())

    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(output_dir=out, num_train_epochs=args.epochs, seed=args.seed,
                                          learning_rate=args.learning_rate,
                                          per_device_train_batch_size=args.batch_size, report_to="none")
        eval_start = time.perf_counter()
        base_accuracy = accuracy(Trainer(model=model, args=training_args).predict(encoded["test"]))
        eval_s = time.perf_counter() - eval_start

        lora = METHODS["lora"].defaults  # the very LoRA config lft_core uses, so only the recipe differs
        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=lora["r"], lora_alpha=lora["lora_alpha"],
                                                 lora_dropout=lora["lora_dropout"], target_modules=["query", "value"]))
        trainer = Trainer(model=model, args=training_args, train_dataset=encoded["train"])
        train_start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - train_start

        model.save_pretrained(f"{out}/adapter")
        tokenizer.save_pretrained(f"{out}/adapter")
        reloaded = AutoPeftModelForSequenceClassification.from_pretrained(
            f"{out}/adapter", num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)})
        eval_start = time.perf_counter()
        tuned_accuracy = accuracy(Trainer(model=reloaded, args=training_args).predict(encoded["test"]))
        eval_s += time.perf_counter() - eval_start

    print(json.dumps({
        "base_accuracy": base_accuracy, "test_accuracy": tuned_accuracy, "train_s": train_s, "eval_s": eval_s,
        "inside_s": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
