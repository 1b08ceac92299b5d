"""`python -m examples.i3d predict | compress`: I3D on the ten real clips, dense or compressed."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def main() -> None:
    """DeepMind's Kinetics-400 I3D on real clips (fixtures: python -m examples.real fetch i3d clips)."""


@main.command()
def predict() -> None:
    """The dense model's top-3 on each clip (64 centred frames, centre crop)."""
    import torch

    from examples.i3d.clips import load_clips, prepare
    from examples.i3d.convert import pretrained_i3d
    from examples.real import kinetics_classes

    classes, model = kinetics_classes(), pretrained_i3d()
    for clip in load_clips():
        with torch.no_grad():
            top = model(prepare(clip.frames)[None]).softmax(1)[0].topk(3)
        guesses = ", ".join(f"{classes[int(i)]} {float(p):.2f}" for p, i in zip(top.values, top.indices, strict=True))
        truth = f" (label: {classes[clip.label]})" if clip.label is not None else ""
        click.echo(f"{clip.name}{truth}: {guesses}")


@main.command()
@click.option("--sparsity", default=None, help="pruning rules, e.g. 'conv=0.9' (default: no pruning)")
@click.option("--bits", default="conv=8", show_default=True, help="quantization rules")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), required=True, help="the container (.vcz)")
def compress(sparsity: str | None, bits: str, output: Path) -> None:
    """Compress the pretrained I3D and compare it with the dense model on every clip (centre crop)."""
    from examples.i3d.clips import load_clips
    from examples.i3d.compress import compress_i3d
    from examples.i3d.convert import pretrained_i3d
    from examples.i3d.evaluate import compare, make_views, predict

    views, inputs = make_views(load_clips(), ("centre",))
    dense = predict(pretrained_i3d(), inputs)
    decoded, figures = compress_i3d(pretrained_i3d(), sparsity, bits, output)
    result = {**figures, **compare(dense, predict(decoded, inputs), views)}
    click.echo(
        f"wrote {output}: {result['bytes']:,} bytes, {result['bits_per_parameter']:.3f} bits a parameter; "
        f"top-1 on labelled clips {100 * result['top1_labelled']:.0f}%, agreement with dense "
        f"{100 * result['agreement']:.0f}%, KL {result['kl']:.4f}"
    )


if __name__ == "__main__":
    main()
