"""The T-C3D example: network, sampling, data, synthetic set, training (also under torchrun)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.tc3d import data as data_module
from examples.tc3d.data import VideoDataset, hmdb51_split, read_frames, ucf101_split
from examples.tc3d.model import FUSIONS, build_tc3d, r3d18
from examples.tc3d.sampling import ConsecutiveSampler, SegmentRandomSampler, all_clips
from examples.tc3d.synthetic import CATALOGUE, generate
from examples.tc3d.train import TrainConfig, run_training

pytest.importorskip("av")
ROOT = Path(__file__).parents[2]


def test_parameter_count_matches_the_authors_layout() -> None:
    model = r3d18(num_classes=101)
    assert sum(p.numel() for p in model.parameters()) == 33_222_309


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("segments", [1, 3, 6])
def test_output_shapes(fusion: str, segments: int) -> None:
    model = build_tc3d(num_classes=5, width=4, segments=segments, fusion=fusion).eval()
    videos = torch.randn(2, segments, 3, 8, 32, 32)
    assert model(videos).shape == (2, 5)
    assert model.clip_scores(videos).shape == (2, segments, 5)
    maps = model.forward_features(videos)
    assert maps.shape[:3] == (2, segments, 32) and maps.ndim == 6  # each clip's last feature map
    assert model.forward_head(maps, pre_logits=True).shape == (2, 32)
    assert torch.allclose(model.forward_head(maps), model(videos))
    backbone_maps = model.backbone.forward_features(videos[:, 0])
    assert torch.allclose(model.backbone.forward_head(backbone_maps), model.backbone(videos[:, 0]))


def test_weighted_fusion_tells_segments_apart() -> None:
    model = build_tc3d(num_classes=2, width=4, segments=2, fusion="weighted")
    with torch.no_grad():
        model.fusion.segment_weight.copy_(torch.tensor([1.0, -1.0]))
    scores = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])
    assert model.fusion(scores).tolist() != model.fusion(scores.flip(1)).tolist()
    with pytest.raises(ValueError, match="weights for 2 segments, got 3 clips"):
        model.fusion(torch.zeros(1, 3, 2))  # no silent fallback to averaging


def test_frozen_fusion_gets_no_step_not_even_from_momentum_or_weight_decay() -> None:
    from examples.tc3d.train import train_one_epoch

    torch.manual_seed(0)
    model = build_tc3d(num_classes=3, width=4, segments=3, fusion="weighted")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    batches = [(torch.randn(2, 3, 3, 8, 24, 24), torch.tensor([0, 2])) for _ in range(3)]
    fusion = [p.detach().clone() for p in model.fusion.parameters()]
    first = model.backbone.conv1.weight.detach().clone()
    train_one_epoch(model, batches, optimizer, torch.device("cpu"), False, frozen=list(model.fusion.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(model.fusion.parameters(), fusion, strict=True))
    assert not torch.equal(model.backbone.conv1.weight, first)
    train_one_epoch(model, batches, optimizer, torch.device("cpu"), False)  # thawed: it learns
    assert not torch.equal(model.fusion.segment_weight, fusion[0])


def test_fusion_warmup_must_fit_the_epochs() -> None:
    with pytest.raises(ValueError, match="fusion_warmup 5: expected 0 to 4 \\(the epochs"):
        TrainConfig(epochs=4, fusion_warmup=5)


def test_fusions_are_a_name_to_class_table() -> None:
    from examples.tc3d.model import AttentionFusion, make_fusion

    assert isinstance(make_fusion("attention", segments=3, num_classes=4), AttentionFusion)
    with pytest.raises(ValueError, match="fusion 'median'"):
        make_fusion("median", segments=3, num_classes=4)


def test_consecutive_sampling_follows_the_paper_300_frame_example() -> None:
    sampler = ConsecutiveSampler(frames_per_clip=8, stride=2)
    test = sampler(300, 3, None).frames
    assert test.shape == (3, 8)
    # segments of 100 frames; a clip spans 15 frames, centred: offset (100 - 15) // 2 = 42
    assert test[:, 0].tolist() == [42, 142, 242]
    assert np.all(np.diff(test, axis=1) == 2)
    rng = np.random.default_rng(0)
    for _ in range(200):
        frames = sampler(300, 3, rng).frames
        for s in range(3):
            assert 100 * s <= frames[s, 0] <= 100 * s + 85 and frames[s, -1] == frames[s, 0] + 14


def test_segment_random_sampling_takes_one_frame_per_sub_fragment() -> None:
    sampler = SegmentRandomSampler(frames_per_clip=8)
    rng = np.random.default_rng(1)
    for _ in range(100):
        frames = sampler(300, 3, rng).frames
        piece = 100 / 8
        for s in range(3):
            for j in range(8):
                assert int(100 * s + j * piece) <= frames[s, j] < 100 * s + (j + 1) * piece
    assert sampler(300, 3, None).frames[0].tolist() == [int(j * 12.5 + 6.25) for j in range(8)]


def test_all_clips_cover_the_video() -> None:
    clips = all_clips(300, 8, 2).frames
    assert clips.shape == (20, 8) and clips[0, 0] == 0 and clips[-1, -1] <= 299


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return generate(root, classes=4, videos_per_class=12, frames=24, size=32, hmdb_splits=True)


def test_fps_counts_s_clips_or_every_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """measure_fps runs the model's S clips, or (every_clip) all of them averaged; FPS counts every frame."""
    import examples.tc3d.evaluate as evaluate

    monkeypatch.setattr(evaluate, "read_frames", lambda path: np.zeros((96, 16, 16, 3), dtype=np.uint8))
    config = TrainConfig(size=16, frames=8, stride=2, segments=3)
    model = build_tc3d(num_classes=4, width=4, segments=3, fusion="weighted")
    seen: list[int] = []
    original = model.clip_scores
    monkeypatch.setattr(model, "clip_scores", lambda videos: (seen.append(videos.shape[1]), original(videos))[1])
    assert evaluate.measure_fps(model, config, [Path("a"), Path("b")]) > 0
    assert evaluate.measure_fps(model, config, [Path("a")], every_clip=True) > 0
    assert seen == [3, 3, all_clips(96, 8, 2).frames.shape[0]] == [3, 3, 6]


def test_generated_videos_read_back_through_the_ucf101_loader(tiny: Path) -> None:
    train, classes = ucf101_split(tiny, train=True)
    test, _ = ucf101_split(tiny, train=False)
    assert classes == [c.name for c in CATALOGUE[:4]]
    assert len(train) == 4 * 4 and len(test) == 4 * 8
    frames = read_frames(train[0].path)
    assert frames.shape == (24, 32, 32, 3) and frames.dtype == np.uint8
    dataset = VideoDataset(train, ConsecutiveSampler(8, 2), segments=3, size=24)
    videos, label = dataset[0]
    assert videos.shape == (3, 3, 8, 24, 24) and label == train[0].label
    hmdb_test, hmdb_classes = hmdb51_split(tiny / "UCF-101", tiny / "hmdb_splits", train=False)
    assert sorted(hmdb_classes) == hmdb_classes and len(hmdb_test) == len(test)


def test_frame_cache_decodes_once_and_gives_the_same_samples(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, _ = ucf101_split(tiny, train=True)
    plain = VideoDataset(train, ConsecutiveSampler(8, 2), segments=3, size=24, seed=5)
    cached = VideoDataset(train, ConsecutiveSampler(8, 2), segments=3, size=24, seed=5, cache_frames=True)
    decoded: list[str] = []
    monkeypatch.setattr(data_module, "read_frames", lambda path: decoded.append(str(path)) or read_frames(path))
    for epoch in range(2):  # augmentation differs between epochs; the cache must not freeze it
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in (0, 3):
            assert torch.equal(plain[index][0], cached[index][0])
    assert len(decoded) == 4 + 2  # the plain set decodes every time, the cached one once a video


def test_synthetic_set_is_deterministic(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", classes=2, videos_per_class=8, frames=16, size=32)
    b = generate(tmp_path / "b", classes=2, videos_per_class=8, frames=16, size=32)
    first = sorted((a / "UCF-101").rglob("*.avi"))
    assert [p.read_bytes() for p in first] == [(b / p.relative_to(a)).read_bytes() for p in first]


def test_validation_groups_are_held_out_of_training(tmp_path: Path) -> None:
    from examples.tc3d.data import has_validation

    root = generate(tmp_path / "v", classes=2, videos_per_class=16, frames=8, size=16, validation_groups=1)
    train, _ = ucf101_split(root, subset="train")
    validation, _ = ucf101_split(root, subset="validation")
    test, _ = ucf101_split(root, subset="test")
    assert (len(train), len(validation), len(test)) == (2 * 4, 2 * 4, 2 * 8)  # groups of 4: test 2, val 1
    assert {i.path for i in validation}.isdisjoint({i.path for i in train} | {i.path for i in test})
    assert all("_g03_" in i.path.name for i in validation)
    assert has_validation(root) and not has_validation(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="subset"):
        ucf101_split(root, subset="dev")
    with pytest.raises(ValueError, match="none for training"):
        generate(tmp_path / "w", classes=2, videos_per_class=12, validation_groups=1)
    assert not (tmp_path / "w").exists()  # refused before anything was written


def test_difficulty_keeps_the_default_videos_and_changes_the_hard_ones() -> None:
    from examples.tc3d.synthetic import HARD, Difficulty, render

    def video(*difficulty):
        return render(CATALOGUE[2], 12, 32, np.random.default_rng([0, 2, 3]), *difficulty)

    assert np.array_equal(video(), video(Difficulty()))  # the demo's videos are what they were
    plain, hard = video().astype(float), video(HARD).astype(float)
    assert not np.array_equal(plain, hard)
    # Stronger noise: frame-to-frame change of the background is larger in the hard video.
    assert np.abs(np.diff(hard, axis=0)).mean() > 1.5 * np.abs(np.diff(plain, axis=0)).mean()


def _config(tiny: Path, out: Path, epochs: int) -> TrainConfig:
    return TrainConfig(
        data=str(tiny), out=str(out), width=4, size=24, epochs=epochs, batch_size=4, workers=0,
        lr=0.01, lr_steps=[1], progress=False,
    )  # fmt: skip


@pytest.mark.slow
def test_resume_ends_with_the_same_weights(tiny: Path, tmp_path: Path) -> None:
    straight = run_training(_config(tiny, tmp_path / "straight", 2))
    run_training(_config(tiny, tmp_path / "resumed", 2), stop_after=1)  # "killed" after epoch 0
    resumed = run_training(_config(tiny, tmp_path / "resumed", 2), resume=True)
    assert [r["epoch"] for r in resumed["history"]] == [0, 1]
    from vidcompress.io import load_state_dict

    a, _ = load_state_dict(tmp_path / "straight" / "model.safetensors")
    b, _ = load_state_dict(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight["history"][-1]["video_accuracy"] == resumed["history"][-1]["video_accuracy"]


@pytest.mark.slow
def test_fusion_warmup_holds_weighted_fusion_at_the_average_then_trains_it(tiny: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from vidcompress.io import load_state_dict

    config = replace(_config(tiny, tmp_path / "run", 2), fusion="weighted", fusion_warmup=1)
    run_training(config, stop_after=1)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert torch.equal(state["fusion.segment_weight"], torch.full((3,), 1 / 3))
    assert torch.equal(state["fusion.segment_bias"], torch.zeros(1))
    run_training(config, resume=True)
    trained, _ = load_state_dict(tmp_path / "run" / "model.safetensors")
    assert not torch.equal(trained["fusion.segment_weight"], torch.full((3,), 1 / 3))


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_gives_the_same_weights(tiny: Path, tmp_path: Path) -> None:
    import signal
    import time

    from vidcompress.io import load_state_dict

    def command(out: Path, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "examples.tc3d", "train", "--data", str(tiny), "--out", str(out), "--width", "4",
            "--size", "24", "--epochs", "3", "--batch-size", "4", "--workers", "0", "--lr-steps", "1", *extra,
        ]  # fmt: skip

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command(tmp_path / "straight"), cwd=ROOT, env=env, check=True, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"
    subprocess.run(command(killed, "--resume"), cwd=ROOT, env=env, check=True, capture_output=True)
    a, _ = load_state_dict(tmp_path / "straight" / "model.safetensors")
    b, _ = load_state_dict(killed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_process_torchrun_training(tiny: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "examples.tc3d", "train", "--data", str(tiny), "--out", str(tmp_path / "ddp"),
        "--width", "4", "--size", "24", "--epochs", "1", "--batch-size", "4", "--workers", "0",
        "--fusion", "weighted", "--fusion-warmup", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp" / "model.safetensors").exists()
    assert (tmp_path / "ddp" / "checkpoint.pt").exists()
    assert "epoch 0" in result.stdout
    from vidcompress.io import load_state_dict

    trained, _ = load_state_dict(tmp_path / "ddp" / "model.safetensors")  # frozen under DDP as well
    assert torch.equal(trained["fusion.segment_weight"], torch.full((3,), 1 / 3))


@pytest.mark.slow
def test_cli_help() -> None:
    for command in ("generate", "train", "evaluate", "features", "anomaly"):
        result = subprocess.run(
            [sys.executable, "-m", "examples.tc3d", command, "--help"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0 and "Usage" in result.stdout


def test_sparse_evaluation_refuses_anything_but_a_container(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from examples.tc3d.__main__ import main

    (tmp_path / "run").mkdir()
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"not a container")
    runner = CliRunner()
    missing = runner.invoke(main, ["evaluate", str(tmp_path / "run"), "--sparse"])
    assert missing.exit_code == 2 and "--sparse needs --weights" in missing.output
    wrong = runner.invoke(main, ["evaluate", str(tmp_path / "run"), "--weights", str(weights), "--sparse"])
    assert wrong.exit_code == 2 and "not a vidcompress container" in wrong.output


def test_paired_comparison_counts_changed_videos() -> None:
    from examples.tc3d.compress import paired_comparison

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    before = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0])  # 8 of 10 right
    after = np.array([1, 1, 0, 0, 1, 1, 1, 1, 1, 0])  # two turn wrong, one turns right: 7 of 10
    paired = paired_comparison(labels, before, after, ["a", "b"])
    assert (paired["right_to_wrong"], paired["wrong_to_right"]) == (2, 1)
    assert paired["mcnemar_p"] == pytest.approx(1.0)  # 2 against 1 is what a coin does
    assert paired["per_class"]["a"] == {"videos": 4, "original": 1.0, "compressed": 0.5}
    assert paired["per_class"]["b"] == {
        "videos": 6,
        "original": pytest.approx(4 / 6),
        "compressed": pytest.approx(5 / 6),
    }
    assert paired["change"] == pytest.approx(-0.1)
    low, high = paired["change_interval_95"]
    assert -0.3 <= low < -0.1 < high <= 0.3  # 3 of 10 changed: the change lies in +-0.3
    lopsided = paired_comparison(np.zeros(8, int), np.zeros(8, int), np.ones(8, int), ["a", "b"])
    assert lopsided["mcnemar_p"] == pytest.approx(2 * 0.5**8)  # eight lost, none gained
    # All 8 changed videos went wrong: exact upper bound of the share lost is 1, lower 0.025**(1/8).
    assert lopsided["change_interval_95"] == pytest.approx([-1.0, -(2 * 0.025 ** (1 / 8) - 1)])
    assert list(lopsided["per_class"]) == ["a"]  # no test videos of class b: no accuracy for it


def test_report_wording_of_changes() -> None:
    from examples.tc3d.compress import paired_comparison
    from examples.tc3d.report import _paired_sentence, signed_points

    assert (signed_points(0.0), signed_points(0.52), signed_points(-1.0)) == ("+0.00", "-0.52", "+1.00")
    assert signed_points(1e-9) == signed_points(-1e-9) == "+0.00"  # float noise in accuracies
    labels = np.array([0, 1, 1, 0])
    perfect = _paired_sentence(paired_comparison(labels, labels, labels, ["a", "b"]))
    assert "same answer" in perfect and "can show a loss but not a gain" in perfect
    churn = _paired_sentence(paired_comparison(labels, labels ^ np.array([1, 0, 0, 0]), labels, ["a", "b"]))
    assert "1 test videos the original classified right" not in churn  # the original got video 0 wrong
    assert "0 test videos the original classified right are wrong after compression and 1" in churn
    assert "not a gain" not in churn
    assert "change is +25.00 points, 95% interval [-23.75, +25.00]" in churn  # one of 4 changed, 0 or 1 lost


@pytest.mark.slow
def test_five_steps_end_to_end_with_report(tiny: Path, tmp_path: Path) -> None:
    from examples.tc3d.compress import CompressConfig, compress_run
    from examples.tc3d.report import write_report
    from vidcompress import DSDConfig, QuantizeConfig
    from vidcompress.codec import decode

    run_training(_config(tiny, tmp_path / "run", 1))
    dsd = DSDConfig(
        sparse_sparsity="conv=0.5,fc=0.5", final_sparsity="conv=0.75,fc=0.75", schedule="step:0.25",
        sparse_epochs=2, dense_epochs=1, final_epochs=4,
    )  # fmt: skip
    config = CompressConfig(
        dsd=dsd, quantize=QuantizeConfig(bits="conv=4,fc=4"), compare=QuantizeConfig(bits="conv=8,fc=5"),
        finetune_epochs=1, progress=False,
    )  # fmt: skip
    assert CompressConfig.from_json(config.to_json()) == config
    summary = compress_run(tmp_path / "run", tmp_path / "out", config, log=lambda _: None)
    steps = {step["step"]: step for step in summary["steps"]}
    assert list(steps) == ["Original", "Sparse", "Dense", "Prune", "Quantize", "Huffman"]
    assert steps["Sparse"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert steps["Dense"]["sparsity"] < 0.2
    assert steps["Prune"]["sparsity"] == pytest.approx(0.75, abs=0.01)
    sizes = [steps[name]["bytes"] for name in ("Original", "Prune", "Quantize", "Huffman")]
    assert sizes == sorted(sizes, reverse=True)  # each step makes the file smaller
    for step in steps.values():
        assert (tmp_path / "out" / step["file"]).stat().st_size == step["bytes"]
    final = decode(tmp_path / "out" / "5_huffman.vcz")
    conv = final["backbone.layer1.0.conv1.weight"]
    assert torch.unique(conv[conv != 0]).numel() <= 15  # 4 bits: 2^4 - 1 nonzero values
    assert summary["ratio"] == pytest.approx(steps["Original"]["bytes"] / steps["Huffman"]["bytes"])
    other = summary["comparison"]
    assert other["bits"] == "conv=8,fc=5" and other["bytes"] > steps["Huffman"]["bytes"]
    paired, videos = summary["paired"], summary["test_videos"]
    change = (paired["wrong_to_right"] - paired["right_to_wrong"]) / videos
    assert steps["Huffman"]["accuracy"] - steps["Original"]["accuracy"] == pytest.approx(change)
    per_class = paired["per_class"].values()
    assert sum(entry["videos"] for entry in per_class) == videos
    weighted = sum(entry["videos"] * entry["compressed"] for entry in per_class) / videos
    assert weighted == pytest.approx(steps["Huffman"]["accuracy"])
    report = write_report(summary, tmp_path / "out").read_text()
    assert "| Huffman |" in report and "quantized at conv=8,fc=5 instead" in report
    assert "Video by video" in report and f"| {summary['classes'][0]} |" in report
    assert all((tmp_path / "out" / png).stat().st_size > 0 for png in ("accuracy_vs_size.png", "layers.png"))


@pytest.mark.slow
def test_evaluation_features_and_anomaly_runs(tiny: Path, tmp_path: Path) -> None:
    from examples.tc3d.evaluate import evaluate_run
    from examples.tc3d.features import anomaly_run, features_run

    config = _config(tiny, tmp_path / "run", 1)
    config.fusion = "weighted"  # all-clips testing must average explicitly, not call the fusion
    run_training(config)
    numbers = evaluate_run(tmp_path / "run", fps_videos=2)
    assert numbers["test_videos"] == 32 and 0.0 <= numbers["video_accuracy_all_clips"] <= 1.0
    assert np.array(numbers["confusion"]).sum() == 32 and numbers["all_clips_per_video"] >= 1
    assert numbers["fps"] > 0 and numbers["fps_all_clips"] > 0
    # the compressed form on the sparse kernels: the same answers as its decoded weights
    from examples.tc3d.evaluate import load_trained
    from vidcompress import QuantizeConfig, encode, finalize_, prune_, quantize_

    model = load_trained(tmp_path / "run")[0]
    prune_(model, "conv=0.9,fc=0.9")
    quantize_(model, QuantizeConfig(bits="conv=8,fc=5"))
    finalize_(model)
    encode(model, tmp_path / "model.vcz")
    sparse = evaluate_run(tmp_path / "run", tmp_path / "model.vcz", fps_videos=2, sparse=True)
    decoded = evaluate_run(tmp_path / "run", tmp_path / "model.vcz", fps_videos=2)
    assert sparse["fps"] > 0 and 0 <= sparse["sparse_layers"] <= 22 and "sparse_layers" not in decoded
    assert abs(sparse["video_accuracy"] - decoded["video_accuracy"]) <= 1 / 32  # at most one video apart
    features = features_run(tmp_path / "run", tmp_path / "features.npz")
    assert features["videos"] == 32 and features["dimensions"] == 32 and 0.0 <= features["pair_auc"] <= 1.0
    anomaly = anomaly_run(config, [CATALOGUE[0].name], epochs=1)
    assert anomaly["test_videos"] == 32 and 0.0 <= anomaly["auc"] <= 1.0


@pytest.mark.slow
def test_demo_runs_every_step_and_its_report_names_the_setting(tmp_path: Path, monkeypatch) -> None:
    """The demo's CLI on a micro version of the quick setting: the five steps, the report, the setting."""
    from dataclasses import replace

    from click.testing import CliRunner

    from examples.tc3d import demo
    from examples.tc3d.__main__ import main

    micro = replace(demo.SETTINGS["quick"], width=4, size=16, frame_size=16, videos_per_class=8, test_groups=1)
    monkeypatch.setitem(demo.SETTINGS, "quick", micro)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "compressed" / "report.md").read_text()
    assert "Setting: **quick**" in report and "tc3d_compress.md" in report  # what the paper setting gives
    for step in ("Original", "Sparse", "Dense", "Prune", "Quantize", "Huffman"):
        assert f"| {step} |" in report
    assert "smaller" in result.output and "accuracy" in result.output
