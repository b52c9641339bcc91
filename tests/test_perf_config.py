"""Configuration of the performance paths: data-parallel loss sharding, the accelerate plan, the --bf16/--backend flags."""

from __future__ import annotations

import argparse

import pytest
import torch
import yaml

from secvec_bench.backends.accelerate_plan import plan_training, write_config
from secvec_bench.errors import UserError
from secvec_bench.training import TrainConfig, answer_loss, collate, encode_all, lora_config, shard_loss
from tiny import CONVS


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("world", [2, 3, 4])
def test_sharded_gradients_sum_to_the_full_batch_gradient(tok, world):
    from peft import get_peft_model
    from tiny import tiny_model

    model = get_peft_model(tiny_model(tok), lora_config(TrainConfig(lora_r=4, target_modules=("q_proj", "v_proj"))))
    for n, p in model.named_parameters():  # make LoRA B non-zero so every LoRA grad is non-trivial
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    ids, mask, labels = collate(encode_all(tok, CONVS, 256), tok.pad_token_id)
    answer_loss(model, ids, mask, labels).backward()
    full = _grads(model)
    model.zero_grad(set_to_none=True)
    total = 0.0
    for rank in range(world):  # world=4 > 3 rows: the last rank has no rows and contributes nothing
        loss = shard_loss(model, ids, mask, labels, rank, world)
        if loss is not None:
            loss.backward()
            total += float(loss.detach())
    summed = _grads(model)
    assert abs(total - float(answer_loss(model, ids, mask, labels))) < 1e-5
    for n, g in full.items():
        assert torch.allclose(summed[n], g, atol=1e-6), n


def test_accelerate_plan_and_config_file(tmp_path):
    plan = plan_training(TrainConfig(batch_size=8, bf16=True), 4)
    assert (plan.num_processes, plan.global_batch, plan.max_rows_per_process, plan.bf16) == (4, 8, 2, True)
    cfg = yaml.safe_load(write_config(plan, tmp_path / "acc.yaml").read_text())
    assert cfg["distributed_type"] == "MULTI_GPU" and cfg["num_processes"] == 4
    assert cfg["mixed_precision"] == "no" and cfg["use_cpu"] is False and cfg["num_machines"] == 1
    assert plan_training(TrainConfig(batch_size=8), 1).config()["distributed_type"] == "NO"
    assert plan_training(TrainConfig(batch_size=7), 2).max_rows_per_process == 4


def test_accelerate_plan_rejects_bad_gpu_counts():
    with pytest.raises(UserError, match="at least 1"):
        plan_training(TrainConfig(), 0)
    with pytest.raises(UserError, match="exceeds the batch size 8"):
        plan_training(TrainConfig(batch_size=8), 9)


def test_example_accelerate_config_matches_the_plan():
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "docs" / "accelerate_multi_gpu.yaml"
    cfg = yaml.safe_load(example.read_text())
    assert cfg == plan_training(TrainConfig(), cfg["num_processes"]).config()


def test_run_flags_set_bf16_everywhere_and_backend():
    from secvec_bench.commands import run as run_cmd

    parser = argparse.ArgumentParser()
    run_cmd.add_to(parser.add_subparsers())
    cfg = run_cmd.config_from_args(parser.parse_args(["run", "--bf16"]))
    assert cfg.gen.bf16 and cfg.attack_cfg.bf16 and cfg.align_cfg.bf16 and cfg.gen.backend == "torch"
    cfg = run_cmd.config_from_args(parser.parse_args(["run"]))
    assert not (cfg.gen.bf16 or cfg.attack_cfg.bf16 or cfg.align_cfg.bf16)
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--backend", "nope"])


@pytest.mark.parametrize("native, bf16, device, warned", [
    (False, True, "cpu", True), (True, True, "cpu", False), (False, False, "cpu", False), (False, True, "cuda", False)])
def test_bf16_warning_only_where_bf16_would_be_emulated(monkeypatch, capsys, native, bf16, device, warned):
    from secvec_bench import hardware
    from secvec_bench.commands import run as run_cmd

    monkeypatch.setattr(hardware, "cpu_bf16_native", lambda: native)
    run_cmd.warn_slow_bf16(bf16, device)
    err = capsys.readouterr().err
    assert ("warning: --bf16" in err) == warned and err.count("\n") == int(warned)


def test_cpu_bf16_native_falls_back_to_the_cpu_flags(monkeypatch):
    from secvec_bench import hardware

    def no_op():
        raise RuntimeError("no such op")

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", no_op, raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert hardware.cpu_bf16_native()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "fma"})
    assert not hardware.cpu_bf16_native()


class _OneProcess:
    """The part of accelerate.Accelerator that train() uses, for a single process."""

    process_index, num_processes = 0, 1
    device = torch.device("cpu")

    def reduce(self, t, reduction="sum"):
        return t


def test_train_with_accelerator_matches_plain_train(tok):
    from peft import get_peft_model
    from tiny import tiny_model

    from secvec_bench.training import train

    cfg = TrainConfig(epochs=2, lr=5e-3, batch_size=2, lora_r=4, target_modules=("q_proj", "v_proj"), seed=1)
    runs = []
    for acc in (None, _OneProcess()):
        torch.manual_seed(1)
        model = get_peft_model(tiny_model(tok), lora_config(cfg))
        stats = train(model, tok, CONVS, cfg, accelerator=acc)
        runs.append((stats.losses, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert runs[0][0] == pytest.approx(runs[1][0], abs=1e-5)
    for n, p in runs[0][1].items():
        assert torch.allclose(p, runs[1][1][n], atol=1e-5), n


@pytest.mark.parametrize("tied", [False, True])
def test_frozen_linears_held_in_bf16_train_exactly_like_autocast_and_are_restored(tok, monkeypatch, tied):
    from contextlib import nullcontext

    from peft import get_peft_model
    from tiny import tiny_model

    from secvec_bench import training

    cfg = TrainConfig(epochs=2, lr=5e-3, batch_size=2, lora_r=4, seed=1, bf16=True)
    runs = []
    for held in (True, False):
        if not held:  # autocast alone casts every frozen weight at each use
            monkeypatch.setattr(training, "frozen_linears_in_bf16", lambda model, enabled: nullcontext())
        base = tiny_model(tok, seed=3)  # ties the LM head to the embedding
        if not tied:
            base.lm_head.weight = torch.nn.Parameter(base.lm_head.weight.detach().clone())
        before = [(p, p.detach().clone()) for p in base.parameters()]  # PEFT keeps these Parameter objects
        model = get_peft_model(base, lora_config(cfg))
        stats = training.train(model, tok, CONVS, cfg)
        for p, original in before:  # every frozen weight is back, in fp32 and bit for bit
            assert p.dtype == torch.float32 and torch.equal(p, original)
        runs.append((stats.losses, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert runs[0][0] == runs[1][0]
    for n, p in runs[0][1].items():
        assert torch.equal(p, runs[1][1][n]), n


def test_frozen_linears_in_bf16_casts_only_frozen_untied_linears(tok):
    from peft import get_peft_model
    from tiny import tiny_model

    from secvec_bench.training import frozen_linears_in_bf16

    base = tiny_model(tok)  # tied LM head: must stay fp32 with the embedding
    model = get_peft_model(base, lora_config(TrainConfig(lora_r=4)))
    with frozen_linears_in_bf16(model, True):
        dtypes = {n: p.dtype for n, p in model.named_parameters()}
        assert dtypes["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
        assert all(dtypes[n] == torch.float32 for n in dtypes if "lora_" in n or "embed" in n or "norm" in n)
        assert base.lm_head.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with frozen_linears_in_bf16(model, False):
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_generation_on_frozen_weights_restores_flags_and_matches_trainable(tok):
    from tiny import tiny_model

    from secvec_bench.generation import GenConfig, autocast_cacheable, generate

    prompts = ["What is the capital of France?", "Hi"]
    cfg = GenConfig(max_new_tokens=4, batch_size=2, bf16=True)
    model = tiny_model(tok)
    trainable_out = generate(model, tok, prompts, cfg)
    model.requires_grad_(False)
    model.lm_head.weight.requires_grad_(True)  # tied to the embeddings: stays as it was
    frozen_out = generate(model, tok, prompts, cfg)
    assert frozen_out == trainable_out
    assert [p.requires_grad for p in model.parameters()] == [p is model.lm_head.weight for p in model.parameters()]
    with autocast_cacheable(model, enabled=True):
        assert all(p.requires_grad for p in model.parameters())
    assert not model.model.layers[0].self_attn.q_proj.weight.requires_grad


def test_bf16_attention_only_for_bf16_and_restored(tok):
    """Grouped attention for a Llama under PEFT, eager for a family it does not cover, the model's own after."""
    from peft import get_peft_model
    from tiny import tiny_model

    from secvec_bench.grouped_attention import IMPLEMENTATION
    from secvec_bench.training import bf16_attention

    model = get_peft_model(tiny_model(tok), lora_config(TrainConfig(lora_r=4)))
    base = model.get_base_model()
    before = base.config._attn_implementation
    assert before not in ("eager", IMPLEMENTATION)
    with bf16_attention(model, True):
        assert base.config._attn_implementation == IMPLEMENTATION
    assert base.config._attn_implementation == before
    with bf16_attention(model, False):
        assert base.config._attn_implementation == before
    base.config.model_type = "gemma2"  # soft-capped attention: not ours to compute
    with bf16_attention(model, True):
        assert base.config._attn_implementation == "eager"
    assert base.config._attn_implementation == before


def test_train_through_the_fused_lora_op_equals_peft_forward(tok, monkeypatch):
    """train() routes LoRA layers through the fused op; in fp32 the run must equal PEFT's own forward."""
    from contextlib import nullcontext

    from peft import get_peft_model
    from tiny import tiny_model

    from secvec_bench import fused_lora, training

    cfg = TrainConfig(epochs=2, lr=5e-3, batch_size=2, lora_r=4, seed=1)
    runs, used = [], []
    real = fused_lora.fused_lora

    def counting(model, enabled=True):
        cm = real(model, enabled)
        used.append(cm)
        return cm

    for fused in (True, False):
        monkeypatch.setattr(fused_lora, "fused_lora", counting if fused else (lambda model, enabled=True: nullcontext(0)))
        model = get_peft_model(tiny_model(tok, seed=3), lora_config(cfg))
        stats = training.train(model, tok, CONVS, cfg)
        runs.append((stats.losses, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert used and runs[0][0] == pytest.approx(runs[1][0], abs=1e-5)
    for n, p in runs[0][1].items():
        assert torch.allclose(p, runs[1][1][n], atol=1e-5), n


def test_keep_freed_memory_stops_page_faults_on_reused_large_tensors():
    import platform
    import resource

    from secvec_bench.hardware import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
    for _ in range(5):  # 64 MB tensors: the first few grow and settle the heap (seen: three)
        torch.empty(16 * 2**20).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(16 * 2**20).fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # a fresh mapping each time (glibc's default) faults 16,384 pages per tensor: 81,920 here
    assert faults < 2 * 16384, faults
