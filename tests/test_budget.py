"""Size budgets: the size model, the allocation, and the file that meets its target."""

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vidcompress.budget import (
    BudgetConfig,
    Candidate,
    Target,
    choose,
    codebook_bits,
    compress_to_budget,
    compressed_weight,
    layer_candidates,
    levels_for,
    parse_size,
)
from vidcompress.cli import main
from vidcompress.codec import EncodeConfig, decode, encode
from vidcompress.errors import ConfigError
from vidcompress.io import save_state_dict

SMALL = BudgetConfig(sparsities=(0.0, 0.5, 0.8, 0.9), bits=(2, 3, 4, 5, 6))


def laplace_model(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def laplace(*shape: int, scale: float) -> torch.Tensor:
        uniform = torch.rand(shape, generator=generator) - 0.5
        return -scale * torch.sign(uniform) * torch.log1p(-2 * uniform.abs())

    return {
        "conv.weight": laplace(16, 3, 3, 3, scale=0.2),
        "conv.bias": torch.zeros(16),
        "fc1.weight": laplace(64, 256, scale=0.05),
        "fc1.bias": torch.zeros(64),
        "fc2.weight": laplace(10, 64, scale=0.1),
    }


def test_sizes_parse_in_decimal_and_binary_units() -> None:
    assert parse_size("5MB") == 5_000_000
    assert parse_size("4.4 MB") == 4_400_000
    assert parse_size("800kB") == 800_000
    assert parse_size("2MiB") == 2 * 1024 * 1024
    assert parse_size("123456") == parse_size(123456) == 123456
    for bad in ("0", "-5MB", "banana", "5 parsecs", "", "1e400MB", True):
        with pytest.raises(ConfigError, match="size"):
            parse_size(bad)


def test_targets_refuse_what_cannot_be_met() -> None:
    for kind, value in (("ratio", 0.5), ("ratio", -2.0), ("bits_per_param", 0.0), ("size", float("nan"))):
        with pytest.raises(ConfigError, match="target"):
            Target(kind, value)
    assert Target("ratio", 10.0).bytes(1_000_000, 250_000) == 100_000
    assert Target("bits_per_param", 2.0).bytes(1_000_000, 250_000) == 62_500


@pytest.mark.parametrize(
    "method", ["kmeans", pytest.param("uniform", marks=pytest.mark.slow), pytest.param("ecsq", marks=pytest.mark.slow)]
)
def test_the_size_model_is_exact_for_every_candidate(method: str) -> None:
    weight = laplace_model()["fc1.weight"]
    bits = (2, 3, 4.5) if method == "uniform" else (2, 3, 5)  # 2 and 3 bits: grouped Huffman streams
    config = BudgetConfig(sparsities=(0.0, 0.7, 0.95), bits=bits, method=method,
                          lagrangian=0.02 if method == "ecsq" else 0.0)  # fmt: skip
    groups = set()
    for index_bits in (5, "auto"):
        for candidate in layer_candidates("fc1.weight", weight, config, index_bits):
            stored = compressed_weight(weight, candidate, config)
            container = encode(
                {"fc1.weight": stored}, _tmp(), EncodeConfig(
                    bits={"fc1.weight": codebook_bits(candidate.bits)}, index_bits={"fc1.weight": candidate.index_bits}
                ),
            )  # fmt: skip
            (entry,) = container.layers
            assert entry.data_bytes + 4 * entry.codebook_size == candidate.bytes, candidate
            assert entry.nonzeros == int((stored != 0).sum())
            groups.add(max(entry.weights.group, entry.indices.group))
    assert max(groups) > 1  # the model was exact where the coder grouped symbols too


def test_fractional_bits_sit_between_whole_bits() -> None:
    assert [levels_for(b) for b in (2, 2.5, 3, 3.5, 4, 4.5, 7.5, 8)] == [3, 5, 7, 11, 15, 21, 181, 255]
    assert [codebook_bits(b) for b in (2, 2.5, 3, 7.5)] == [2, 3, 3, 8]
    weight = laplace_model()["fc1.weight"]
    config = BudgetConfig(sparsities=(0.0,), bits=(3, 3.5, 4), method="uniform")
    assert BudgetConfig(method="uniform").bits[:3] == (2, 2.5, 3) and BudgetConfig().bits[:2] == (2, 3)
    whole, half, more = layer_candidates("fc1.weight", weight, config, 5)
    assert whole.bytes < half.bytes < more.bytes and whole.damage > half.damage > more.damage
    assert half.levels <= 11 < more.levels
    with pytest.raises(ConfigError, match="bits"):
        BudgetConfig(bits=(0.5, 3))


def test_a_grid_without_pruning_prunes_nothing(tmp_path: Path) -> None:
    tensors = laplace_model()
    config = BudgetConfig(sparsities=(0.0,), bits=(2, 2.5, 3, 4, 5), method="uniform")
    allocation, _ = compress_to_budget(tensors, tmp_path / "m.vcz", 9_000, config)
    decoded = decode(tmp_path / "m.vcz")
    for layer in allocation.layers:  # the slack is not spent on pruning beyond the grid
        assert layer.chosen.sparsity == 0.0
        assert int((decoded[layer.name] == 0).sum()) == 0, layer.name


def test_the_allocation_is_the_least_damage_that_fits() -> None:
    """Against brute force on small random knapsacks (integer bytes under 20,000: the DP is exact), where
    a Lagrangian sweep with greedy upgrades alone misses the optimum on some."""
    import itertools

    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(40):
        layers = {
            f"layer{i}": [Candidate(0.0, 2, 5, 3, int(b), float(d)) for b, d in
                          zip(rng.integers(10, 400, 5), rng.uniform(0, 10, 5), strict=True)]
            for i in range(4)
        }  # fmt: skip
        budget = int(rng.integers(200, 1200))
        fits = [combo for combo in itertools.product(*layers.values()) if sum(c.bytes for c in combo) <= budget]
        chosen = choose(layers, budget)
        if not fits:
            assert chosen is None
            continue
        assert chosen is not None and sum(c.bytes for c in chosen.values()) <= budget
        best = min(sum(c.damage for c in combo) for combo in fits)
        assert sum(c.damage for c in chosen.values()) == pytest.approx(best)


def _tmp() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp()) / "layer.vcz"


@pytest.mark.parametrize(
    "budget", [pytest.param(5_000, marks=pytest.mark.slow), 7_000, pytest.param(11_000, marks=pytest.mark.slow)]
)
def test_budgets_are_met_and_nearly_filled(tmp_path: Path, budget: int) -> None:
    tensors = laplace_model()
    allocation, container = compress_to_budget(tensors, tmp_path / "m.vcz", budget, SMALL)
    written = (tmp_path / "m.vcz").stat().st_size
    assert written == container.file_bytes == allocation.actual_bytes
    assert 0.98 * budget <= written <= budget
    predicted, first_written = allocation.first_plan
    assert abs(predicted - first_written) <= 0.01 * first_written  # the size model, before any correction
    decoded = decode(tmp_path / "m.vcz")
    for layer in allocation.layers:
        stored = decoded[layer.name]
        assert torch.unique(stored[stored != 0]).numel() <= levels_for(layer.chosen.bits)
        zeros = float((stored == 0).float().mean())
        assert zeros == pytest.approx(layer.chosen.sparsity, abs=0.02)
    assert torch.equal(decoded["conv.bias"], tensors["conv.bias"])  # tensors outside the budget kept


@pytest.mark.slow
def test_a_tighter_budget_costs_more_damage(tmp_path: Path) -> None:
    tensors = laplace_model()
    loose, _ = compress_to_budget(tensors, tmp_path / "a.vcz", 14_000, SMALL)
    tight, _ = compress_to_budget(tensors, tmp_path / "b.vcz", 6_000, SMALL)
    assert tight.damage > loose.damage


@pytest.mark.slow
def test_importance_moves_bytes_to_the_layer_that_matters(tmp_path: Path) -> None:
    tensors = laplace_model()
    flat = {name: torch.ones_like(t) for name, t in tensors.items() if name.endswith("weight")}
    plain, _ = compress_to_budget(tensors, tmp_path / "a.vcz", 7_000, SMALL, importance=flat)
    heavy = dict(flat, **{"fc2.weight": torch.full_like(tensors["fc2.weight"], 1e4)})
    weighted, _ = compress_to_budget(tensors, tmp_path / "b.vcz", 7_000, SMALL, importance=heavy)
    bytes_of = lambda allocation: {layer.name: layer.chosen.bytes for layer in allocation.layers}  # noqa: E731
    assert bytes_of(weighted)["fc2.weight"] > bytes_of(plain)["fc2.weight"]
    assert weighted.damage_measure == "importance-weighted squared error"


def test_an_impossible_budget_is_one_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "m.vcz"
    out.write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="below the smallest file"):
        compress_to_budget(laplace_model(), out, 500, SMALL)
    assert out.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["m.vcz"]


def test_the_cli_meets_the_budget_and_reports_bad_ones(tmp_path: Path) -> None:
    save_state_dict(laplace_model(), tmp_path / "in.safetensors")
    runner = CliRunner()
    common = ["compress", str(tmp_path / "in.safetensors"), "-o", str(tmp_path / "out.vcz"),
              "--sparsities", "0,0.5,0.8,0.9", "--bits", "2-6"]  # fmt: skip
    result = runner.invoke(main, [*common, "--target-ratio", "12", "--report", str(tmp_path / "a.md"),
                                  "--plot", str(tmp_path / "a.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    dense = sum(t.numel() * 4 for t in laplace_model().values())
    assert (tmp_path / "out.vcz").stat().st_size <= dense / 12
    assert "| fc1.weight |" in (tmp_path / "a.md").read_text() and (tmp_path / "a.png").stat().st_size > 0
    for args, message in (
        (["--target-size", "0"], "must be at least 1 byte"),
        (["--target-size", "-3MB"], "not a size"),
        (["--target-size", "lots"], "not a size"),
        (["--target-size", "200"], "below the smallest file"),
        (["--target-ratio", "0.5"], "at least 1"),
        (["--target-ratio", "2", "--target-size", "5MB"], "exactly one"),
        ([], "exactly one"),
        (["--target-size", "5MB", "--bits", "two"], "comma-separated list"),
    ):
        (tmp_path / "bad.vcz").unlink(missing_ok=True)
        bad = ["compress", str(tmp_path / "in.safetensors"), "-o", str(tmp_path / "bad.vcz"), *args]
        result = runner.invoke(main, bad)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and result.output.count("error:") == 1, result.output
        assert not (tmp_path / "bad.vcz").exists()


def test_a_tied_weight_stays_one_weight(tmp_path: Path) -> None:
    from torch import nn

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 32)
            self.body = nn.Linear(32, 32)
            self.head = nn.Linear(32, 100, bias=False)
            self.head.weight = self.embed.weight

    torch.manual_seed(0)
    model = Tied()
    # Default kinds (conv, fc): the tied pair is an embedding, left whole; only body is compressed.
    allocation, container = compress_to_budget(model, tmp_path / "a.vcz", 16_000, SMALL)
    assert [layer.name for layer in allocation.layers] == ["body.weight"]
    assert container.aliases == {"head.weight": "embed.weight"}
    decoded = decode(tmp_path / "a.vcz")
    assert torch.equal(decoded["head.weight"], model.embed.weight.detach())
    # With embeddings selected, the pair is compressed once and stays tied.
    config = BudgetConfig(sparsities=(0.0, 0.5, 0.8), bits=(2, 4, 6), kinds=("conv", "fc", "emb"))
    allocation, container = compress_to_budget(model, tmp_path / "b.vcz", 8_000, config)
    assert {layer.name for layer in allocation.layers} == {"embed.weight", "body.weight"}
    decoded = decode(tmp_path / "b.vcz")
    assert container.aliases == {"head.weight": "embed.weight"}
    assert torch.equal(decoded["head.weight"], decoded["embed.weight"])


@pytest.mark.slow
def test_a_measured_sensitivity_steers_the_allocation(tmp_path: Path) -> None:
    tensors = laplace_model()
    reference = {name: t.clone() for name, t in tensors.items()}

    def evaluate(state: dict[str, torch.Tensor]) -> float:  # a "loss" that only fc2 moves
        return float((state["fc2.weight"] - reference["fc2.weight"]).square().sum())

    plain, _ = compress_to_budget(tensors, tmp_path / "a.vcz", 5_000, SMALL)
    steered, _ = compress_to_budget(tensors, tmp_path / "b.vcz", 5_000, SMALL, evaluate=evaluate)
    chosen = lambda allocation: {layer.name: layer.chosen for layer in allocation.layers}  # noqa: E731
    assert chosen(steered)["fc2.weight"].bytes > chosen(plain)["fc2.weight"].bytes  # the layer that matters
    assert "measured sensitivity" in steered.damage_measure
    assert (tmp_path / "b.vcz").stat().st_size <= 5_000
