"""python -m examples.tc3d generate | train | evaluate | features | anomaly."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import click

from examples.tc3d.model import FUSIONS
from examples.tc3d.sampling import SAMPLERS
from examples.tc3d.train import TrainConfig


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """T-C3D on video data: a synthetic set, training, evaluation, features, anomaly detection."""


@main.command()
@click.argument("root", type=click.Path(path_type=Path), default="data/synthetic")
@click.option("--classes", type=click.IntRange(2, 10), default=8, show_default=True)
@click.option("--videos-per-class", type=click.IntRange(min=8), default=32, show_default=True)
@click.option("--frames", type=click.IntRange(min=16), default=48, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=64, show_default=True, help="frame side in pixels")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--test-groups",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="groups of 4 videos a class for testing",
)
@click.option("--hmdb-splits", is_flag=True, help="also write HMDB51-style split files")
def generate(
    root: Path,
    classes: int,
    videos_per_class: int,
    frames: int,
    size: int,
    seed: int,
    test_groups: int,
    hmdb_splits: bool,
) -> None:
    """Write the synthetic action data set (real .avi files, UCF101 layout) under ROOT."""
    from examples.tc3d.synthetic import generate as write

    write(
        root, classes=classes, videos_per_class=videos_per_class, frames=frames, size=size, seed=seed,
        test_groups=test_groups, hmdb_splits=hmdb_splits, progress=True,
    )  # fmt: skip
    click.echo(f"wrote {classes * videos_per_class} videos under {root}")


def train_options(command):
    defaults = TrainConfig()
    options = [
        click.option("--data", default=defaults.data, show_default=True, help="UCF101-layout root"),
        click.option("--out", default=defaults.out, show_default=True, help="run folder"),
        click.option("--width", type=int, default=defaults.width, show_default=True, help="64 = the paper's"),
        click.option("--size", type=int, default=defaults.size, show_default=True, help="input side"),
        click.option("--segments", type=int, default=defaults.segments, show_default=True, help="S"),
        click.option("--fusion", type=click.Choice(FUSIONS), default=defaults.fusion, show_default=True),
        click.option("--sampler", type=click.Choice(SAMPLERS), default=defaults.sampler, show_default=True),
        click.option("--epochs", type=int, default=defaults.epochs, show_default=True),
        click.option("--batch-size", type=int, default=defaults.batch_size, show_default=True),
        click.option("--lr", type=float, default=defaults.lr, show_default=True),
        click.option("--lr-steps", default="20,25", show_default=True, help="epochs where lr x 0.1"),
        click.option("--dropout", type=float, default=defaults.dropout, show_default=True),
        click.option(
            "--fusion-warmup",
            type=click.IntRange(min=0),
            default=defaults.fusion_warmup,
            show_default=True,
            help="epochs the fusion's own weights stay at their start (weighted: the average), so the backbone "
            "learns first",
        ),
        click.option("--workers", type=int, default=defaults.workers, show_default=True),
        click.option("--cache-frames", is_flag=True, help="decode each video once and keep it in memory (small sets)"),
        click.option("--seed", type=int, default=defaults.seed, show_default=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def config_from(options: dict) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in options.items() if k in names}
    try:
        values["lr_steps"] = [int(s) for s in str(options["lr_steps"]).split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(
            f"not comma-separated epochs: {options['lr_steps']!r}", param_hint="--lr-steps"
        ) from None
    try:
        return TrainConfig(**values)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


@main.command()
@train_options
@click.option("--resume", is_flag=True, help="continue from the run folder's last checkpoint")
def train(resume: bool, **options) -> None:
    """Train T-C3D (single process, or under torchrun for DDP); checkpoints every epoch."""
    from examples.tc3d.train import run_training

    config = config_from(options)
    result = run_training(
        config, resume=resume,
        on_epoch=lambda r: click.echo(
            f"epoch {r['epoch']}: loss {r['train_loss']:.3f}, video acc {r['video_accuracy']:.3f}, "
            f"clip acc {r['clip_accuracy']:.3f}, lr {r['lr']:.2g}"
        ),
    )  # fmt: skip
    if result["history"]:
        click.echo(f"final video accuracy {result['history'][-1]['video_accuracy']:.3f}; weights in {config.out}")


@main.command("evaluate")
@click.argument("run", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--weights", type=click.Path(path_type=Path, exists=True), help="other weights for this architecture")
@click.option(
    "--sparse",
    is_flag=True,
    help="WEIGHTS is a compressed container: run it on the sparse kernels (load_sparse), FPS of the compressed form",
)
def evaluate_command(run: Path, weights: Path | None, sparse: bool) -> None:
    """Accuracy (S clips, all clips), FPS, FLOPs and size of a trained RUN."""
    from examples.tc3d.evaluate import evaluate_run
    from vidcompress.errors import VidcompressError

    if sparse and weights is None:
        raise click.UsageError("--sparse needs --weights: the compressed container to run")
    try:
        numbers = evaluate_run(run, weights, sparse=sparse)
    except VidcompressError as error:  # a bad file: one line, exit 2
        raise click.UsageError(str(error)) from None
    click.echo(json.dumps(numbers, indent=2))


@main.command()
@click.argument("run", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path), help="save the features as .npz")
def features(run: Path, out: Path | None) -> None:
    """pool5 video features of the test split and their same/different-action pair AUC."""
    from examples.tc3d.features import features_run

    click.echo(json.dumps(features_run(run, out), indent=2))


@main.command()
@train_options
@click.option(
    "--anomaly",
    "anomalies",
    multiple=True,
    default=["Fall"],
    show_default=True,
    help="classes that count as anomalies (repeat the option)",
)
def anomaly(anomalies: tuple[str, ...], **options) -> None:
    """Train anomaly-vs-normal T-C3D and report the test AUC."""
    from examples.tc3d.features import anomaly_run

    click.echo(json.dumps(anomaly_run(config_from(options), list(anomalies)), indent=2))


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default="runs/demo", show_default=True)
@click.option("--paper", "setting", flag_value="paper", help="the paper's pruning schedule (about 30 min on 2 cores)")
@click.option("--full", "setting", flag_value="full", help="the paper's full-size model and bits: for a GPU")
@click.option("--epochs", type=int, help="training epochs [default: 20; 15 with --paper, 30 with --full]")
@click.option(
    "--fusion", type=click.Choice(FUSIONS), default="weighted", show_default=True,
    help="weighted is the only fusion that can tell the two order classes apart",
)  # fmt: skip
@click.option("--retrain", is_flag=True, help="train again even if the run folder has a model")
def demo(out: Path, setting: str | None, epochs: int | None, fusion: str, retrain: bool) -> None:
    """The whole job: synthetic data, a trained T-C3D, the five compression steps, a report.

    By default a quick setting that finishes in a few minutes on a 2-core CPU; --paper and --full run
    the longer ones (the report says which ran)."""
    from examples.tc3d.demo import SETTINGS, run_demo
    from examples.tc3d.report import signed_points, write_report
    from vidcompress.report import machine_info, machine_line

    chosen = SETTINGS[setting or "quick"]
    click.echo(f"demo setting: {chosen.name} ({chosen.description})")
    summary = run_demo(chosen, out, epochs=epochs, fusion=fusion, retrain=retrain, log=click.echo)
    click.echo("4/4 writing the report")
    report = write_report(
        summary, out / "compressed", machine=machine_line(machine_info()), wall_seconds=summary["wall_seconds"]
    )
    click.echo(
        f"done in {summary['wall_seconds'] / 60:.1f} min: {summary['ratio']:.1f}x smaller, accuracy "
        f"{signed_points(summary['accuracy_drop_points'])} points; report: {report}"
    )


if __name__ == "__main__":
    main()
