import pytest
import torch
from models import mlp
from sklearn.datasets import load_digits
from torch import nn

from vidcompress.errors import ConfigError
from vidcompress.prune import DSDConfig, StepSchedule, run_dsd, sensitivity_analysis


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=generator)
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


def _loop(digits):
    x_train, y_train, x_test, y_test = digits

    def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        model.train()
        for batch in torch.randperm(len(y_train)).split(64):
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def evaluate(model: nn.Module) -> float:
        model.eval()
        return float((model(x_test).argmax(1) == y_test).float().mean())

    return train_one_epoch, evaluate


def _trained(digits):
    model = mlp((64, 128, 64, 10))
    train_one_epoch, _evaluate = _loop(digits)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(8):
        train_one_epoch(model, optimizer, epoch)
    return model, optimizer


def test_dsd_runs_three_phases_and_records_history(digits) -> None:
    model, optimizer = _trained(digits)
    train_one_epoch, evaluate = _loop(digits)
    config = DSDConfig(
        sparse_sparsity="fc=0.5",
        final_sparsity="fc=0.8",
        schedule=StepSchedule(0.25),
        sparse_epochs=3,
        dense_epochs=2,
        final_epochs=4,
    )
    ends: list[tuple[str, float]] = []
    history, pruner = run_dsd(
        model, optimizer, train_one_epoch, evaluate, config,
        on_phase_end=lambda phase, m: ends.append((phase, float((m[0].weight == 0).float().mean()))),
    )  # fmt: skip
    assert [phase for phase, _ in ends] == ["sparse", "dense", "final"]
    assert ends[0][1] == pytest.approx(0.5, abs=1e-3) and ends[2][1] == pytest.approx(0.8, abs=1e-3)
    assert [r.phase for r in history.records] == ["sparse"] * 3 + ["dense"] * 2 + ["final"] * 4
    assert [r.epoch for r in history.records] == list(range(9))
    assert history.records[0].sparsity["0.weight"] == pytest.approx(0.25)
    assert history.phase_end("sparse").sparsity["0.weight"] == pytest.approx(0.5)
    assert history.phase_end("dense").lr == pytest.approx(0.01)
    assert history.phase_end("final").lr == pytest.approx(0.1)  # final_lr_factor 1.0
    assert history.phase_end("final").overall_sparsity == pytest.approx(0.8, abs=1e-3)
    assert history.baseline > 0.9
    assert history.phase_end("final").metric > history.baseline - 0.05
    assert "| final |" in history.to_markdown()
    assert DSDConfig.from_json(config.to_json()) == config
    pruner.finalize()
    assert not any("parametrizations" in key for key in model.state_dict())


def test_dense_phase_really_trains_the_pruned_weights(digits) -> None:
    model, optimizer = _trained(digits)
    train_one_epoch, evaluate = _loop(digits)
    config = DSDConfig(
        sparse_sparsity="fc=0.5",
        final_sparsity="fc=0.5",
        schedule=StepSchedule(0.5),
        sparse_epochs=1,
        dense_epochs=1,
        final_epochs=0,
    )
    history, _ = run_dsd(model, optimizer, train_one_epoch, evaluate, config)
    assert history.phase_end("sparse").overall_sparsity == pytest.approx(0.5, abs=1e-3)
    assert history.phase_end("dense").overall_sparsity < 0.05


def test_recovery_epochs_run_at_the_recovery_rate(digits) -> None:
    model, optimizer = _trained(digits)
    train_one_epoch, evaluate = _loop(digits)
    config = DSDConfig(
        sparse_sparsity="fc=0.5",
        final_sparsity="fc=0.8",
        schedule=StepSchedule(0.25),
        sparse_epochs=3,
        dense_epochs=1,
        final_epochs=5,
        recovery_lr_factor=0.1,
    )
    history, _ = run_dsd(model, optimizer, train_one_epoch, evaluate, config)
    rates = [(r.phase, round(r.lr, 6)) for r in history.records]
    # sparse: 2 epochs to reach 0.5, then 1 recovery epoch; dense at 0.1 x the initial rate, not
    # the recovery rate; final: 4 epochs to reach 0.8, then 1 recovery epoch.
    assert rates == [("sparse", 0.1)] * 2 + [("sparse", 0.01), ("dense", 0.01)] + [("final", 0.1)] * 4 + [
        ("final", 0.01)
    ]
    assert history.phase_end("final").overall_sparsity == pytest.approx(0.8, abs=1e-3)


def test_dsd_refuses_a_phase_too_short_for_its_schedule(digits) -> None:
    model, optimizer = _trained(digits)
    train_one_epoch, evaluate = _loop(digits)
    with pytest.raises(ConfigError, match="sparse phase: 3 epochs"):
        run_dsd(model, optimizer, train_one_epoch, evaluate, DSDConfig(sparse_epochs=3))


def test_sensitivity_analysis_restores_the_model_and_proposes(digits, tmp_path) -> None:
    model, _ = _trained(digits)
    _, evaluate = _loop(digits)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = sensitivity_analysis(model, evaluate, (0.5, 0.9, 0.99))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(report.metrics) == {"0.weight", "2.weight", "4.weight"}
    drops = report.drops()
    assert all(d[2] >= d[0] - 0.02 for d in drops.values())  # more pruning, more damage
    proposal = report.propose(tolerance=0.01)
    for name, value in proposal.items():
        index = report.sparsities.index(value) if value else None
        assert index is None or drops[name][index] <= 0.01
    rules = report.proposed_rules(0.01)
    assert rules.resolve(__import__("vidcompress").module_layers(model)) == {k: v for k, v in proposal.items() if v > 0}
    assert "drop @ 0.9" in report.to_markdown()
    pytest.importorskip("matplotlib")
    report.plot(tmp_path / "sensitivity.png")
    assert (tmp_path / "sensitivity.png").stat().st_size > 1000
