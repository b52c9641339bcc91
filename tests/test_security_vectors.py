"""The security-vector contract: the `sv` adapter is active during the attack, frozen, untouched, and removed after."""

from __future__ import annotations

from pathlib import Path

import torch

from secvec_bench.stages import ATTACK_ADAPTER, build_attack_model, load_attacked
from secvec_bench.training import TrainConfig, lora_config, train

HARMFUL = [[{"role": "user", "content": "Explain how to do it."},
            {"role": "assistant", "content": "Sure, here is how to do it."}]] * 8
CFG = TrainConfig(epochs=2, lr=5e-3, batch_size=4, lora_r=4, target_modules=("q_proj", "v_proj"))
SV_CFG = TrainConfig(epochs=20, lr=2e-2, batch_size=8, lora_r=4, target_modules=("q_proj", "v_proj", "up_proj", "down_proj"))


def _save_sv(tok, aligned: Path, out: Path) -> Path:
    from peft import get_peft_model
    from secvec_bench.models import load_model

    pm = get_peft_model(load_model(aligned), lora_config(SV_CFG), adapter_name="sv")
    train(pm, tok, HARMFUL, SV_CFG)
    pm.save_pretrained(out, selected_adapters=["sv"])
    return next(p.parent for p in out.rglob("adapter_config.json"))


def _sv_params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if ".sv." in n}


def test_sv_frozen_untouched_and_unseen_by_optimizer(tiny_dir, tok, tmp_path, monkeypatch):
    from secvec_bench.models import load_model

    sv_dir = _save_sv(tok, tiny_dir, tmp_path / "sv")
    for mode in ("lora", "full"):
        pm, frozen_tags = build_attack_model(load_model(tiny_dir), {"sv": sv_dir}, TrainConfig(**{**CFG.__dict__, "mode": mode}))
        before = _sv_params(pm)
        assert before, "sv adapter not loaded"
        assert all(not p.requires_grad for n, p in pm.named_parameters() if ".sv." in n)
        # both adapters active during training
        active = pm.base_model.active_adapters if hasattr(pm.base_model, "active_adapters") else pm.active_adapters
        assert "sv" in active
        if mode == "lora":
            assert ATTACK_ADAPTER in active

        seen: list[set[int]] = []
        real_adamw = torch.optim.AdamW

        def spy(params, *a, **k):
            params = list(params)
            seen.append({id(p) for p in params})
            return real_adamw(params, *a, **k)

        monkeypatch.setattr(torch.optim, "AdamW", spy)
        train(pm, tok, HARMFUL, TrainConfig(**{**CFG.__dict__, "mode": mode}), never_train=frozen_tags)
        monkeypatch.setattr(torch.optim, "AdamW", real_adamw)
        sv_ids = {id(p) for n, p in pm.named_parameters() if ".sv." in n}
        assert seen and not (seen[0] & sv_ids), "optimizer received security-vector parameters"
        after = _sv_params(pm)
        assert before.keys() == after.keys()
        for n in before:
            assert torch.equal(before[n], after[n]), f"{n} changed during the attack"


def test_sv_lowers_loss_on_harmful_targets(tiny_dir, tok, tmp_path):
    """With sv active the harmful loss is already low: that is why the core weights learn little of it."""
    from peft import PeftModel
    from secvec_bench.models import load_model
    from secvec_bench.training import mean_loss

    sv_dir = _save_sv(tok, tiny_dir, tmp_path / "sv")
    plain = mean_loss(load_model(tiny_dir), tok, HARMFUL)
    with_sv = mean_loss(PeftModel.from_pretrained(load_model(tiny_dir), str(sv_dir)), tok, HARMFUL)
    assert with_sv < plain * 0.5


def test_inference_model_has_no_sv(tiny_dir, tok, tmp_path):
    """The evaluated model equals aligned + attack update; removing sv is exact."""
    from secvec_bench.io import atomic_write_json
    from secvec_bench.models import load_model

    sv_dir = _save_sv(tok, tiny_dir, tmp_path / "sv")
    pm, tags = build_attack_model(load_model(tiny_dir), {"sv": sv_dir}, CFG)
    train(pm, tok, HARMFUL, CFG, never_train=tags)
    out = tmp_path / "attack"
    pm.save_pretrained(out / "adapter", selected_adapters=[ATTACK_ADAPTER])
    atomic_write_json(out / "attack.json", {"mode": "lora"})
    saved = {p.parent.name for p in out.rglob("adapter_config.json")}
    assert saved == {ATTACK_ADAPTER}
    model = load_attacked(tiny_dir, out)
    assert not any("lora" in n for n, _ in model.named_parameters())
    # reference: aligned + the attack adapter only, computed by hand
    pm.base_model.set_adapter(ATTACK_ADAPTER)
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        ref = pm(input_ids=ids).logits
        got = model(input_ids=ids).logits
    assert torch.allclose(ref, got, atol=1e-5)
