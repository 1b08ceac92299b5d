"""The `vidcompress` command line: prune, quantize, encode, decode, inspect."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vidcompress._version import __version__
from vidcompress.encode import (
    DEFAULT_INDEX_BITS,
    decode_with_metadata,
    encode,
    inspect_container,
    is_container,
    read_container,
)
from vidcompress.errors import VidcompressError
from vidcompress.io import check_output_path, load_state_dict, save_state_dict
from vidcompress.metadata import with_stage
from vidcompress.prune.pruner import DEFAULT_SPARSITY, PruneConfig, prune_state_dict
from vidcompress.quantize import DEFAULT_BITS, INITS, QuantizeConfig, quantize_state_dict
from vidcompress.report import inspect_state_dict
from vidcompress.rules import BITS, ENCODE_BITS, INDEX_BITS, SPARSITY, LayerRules

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(click.ClickException):
    """A user error: printed as one line, exit code 2 (like click's own usage errors)."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def user_errors(command: F) -> F:
    """Turn the package's errors into one-line CLI errors with exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except VidcompressError as error:
            raise CommandError(str(error)) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidcompress")
def main() -> None:
    """Compress PyTorch weights: prune, quantize (k-means weight sharing), encode (Huffman)."""


input_argument = click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
output_option = click.option(
    "-o",
    "--output",
    "output_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Output file.",
)
force_option = click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")


@main.command()
@input_argument
@output_option
@click.option(
    "--sparsity",
    default=DEFAULT_SPARSITY,
    show_default=True,
    help="Per-layer targets: kinds (conv, fc) or globs over parameter names, later rules win, "
    "0 or 'off' leaves a layer dense; or a .json/.toml rule file.",
)
@force_option
@user_errors
def prune(input_path: Path, output_path: Path, sparsity: str, force: bool) -> None:
    """One-shot magnitude pruning of a weights file (no data needed).

    IN is a .safetensors file or a .pt/.pth state dict (read with weights_only); the output is a
    .safetensors file that loads into the original model, zeros in place.
    """
    check_output_path(output_path, inputs=(input_path,), force=force)
    rules = LayerRules.parse(sparsity, SPARSITY)
    tensors, metadata = load_state_dict(input_path)
    pruned, targets = prune_state_dict(tensors, rules)
    record = {"config": PruneConfig(sparsity=rules).to_dict(), "sparsity": targets}
    save_state_dict(pruned, output_path, with_stage(metadata, "prune", record, str(input_path)))
    total = sum(tensors[name].numel() for name in targets)
    zeros = sum(int((pruned[name] == 0).sum()) for name in targets)
    click.echo(
        f"wrote {output_path}: pruned {len(targets)} layers, "
        f"{zeros:,} of {total:,} weights are zero ({zeros / max(total, 1):.3f})"
    )


@main.command()
@input_argument
@output_option
@click.option(
    "--bits",
    default=DEFAULT_BITS,
    show_default=True,
    help="Bits per layer (1-16; 2^b - 1 centroids plus zero): kinds or globs, later rules win, "
    "'off' keeps a layer in full precision; or a .json/.toml rule file.",
)
@click.option("--init", type=click.Choice(INITS), default="linear", show_default=True, help="Centroid initialisation.")
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Cap on k-means iterations.",
)
@click.option(
    "--plots",
    "plot_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write a weight histogram with centroids per layer (PNG) into this folder.",
)
@force_option
@user_errors
def quantize(
    input_path: Path,
    output_path: Path,
    bits: str,
    init: str,
    max_iter: int,
    plot_dir: Path | None,
    force: bool,
) -> None:
    """Per-layer k-means weight sharing of a weights file (zeros stay zero).

    Each selected layer of the output holds at most 2^b distinct values; the codebooks are recorded
    in the file's metadata. Fine-tuning the centroids needs data: use quantize_() in Python.
    """
    check_output_path(output_path, inputs=(input_path,), force=force)
    config = QuantizeConfig(bits=LayerRules.parse(bits, BITS), init=init, max_iter=max_iter)
    tensors, metadata = load_state_dict(input_path)
    quantized, report = quantize_state_dict(tensors, config)
    record = {
        "config": config.to_dict(),
        "layers": {
            layer.name: {"bits": layer.bits, "codebook": layer.codebook, "sse": layer.sse} for layer in report.layers
        },
    }
    if plot_dir is not None:
        from vidcompress.plots import plot_weight_histogram

        plot_dir.mkdir(parents=True, exist_ok=True)
        for layer in report.layers:
            plot_weight_histogram(
                tensors[layer.name].float().numpy(),
                layer.codebook,
                plot_dir / f"{layer.name}.png",
                f"{layer.name}: {layer.bits} bits",
            )
    save_state_dict(quantized, output_path, with_stage(metadata, "quantize", record, str(input_path)))
    click.echo(report.to_markdown())
    click.echo(f"wrote {output_path}: {len(report.layers)} layers quantized")


@main.command("encode")
@input_argument
@output_option
@click.option(
    "--index-bits",
    default=DEFAULT_INDEX_BITS,
    show_default=True,
    help="Relative-index width per layer (1-16, or 'auto' for the smallest coded size).",
)
@click.option("--no-huffman", is_flag=True, help="Store every stream packed: the size before Huffman coding.")
@click.option(
    "--bits",
    help="Layers to encode and their codebook bits, or 'raw' for pruned-only layers (values stored as they "
    "are); default: as recorded by 'vidcompress quantize', else conv=8,fc=5. Other tensors are stored whole.",
)
@force_option
@user_errors
def encode_command(
    input_path: Path, output_path: Path, index_bits: str, no_huffman: bool, bits: str | None, force: bool
) -> None:
    """Encode a quantized weights file into one container (relative-index CSC + Huffman).

    A selected layer with more than 2^b distinct values is an error: quantize it first.
    """
    check_output_path(output_path, inputs=(input_path,), force=force)
    index_rules = LayerRules.parse(index_bits, INDEX_BITS)
    bit_rules = LayerRules.parse(bits, ENCODE_BITS) if bits else None
    tensors, metadata = load_state_dict(input_path)
    container = encode(
        tensors, output_path, bits=bit_rules, index_bits=index_rules, metadata=metadata, huffman=not no_huffman
    )
    dense_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    click.echo(
        f"wrote {output_path}: {len(container.layers)} layers encoded, {len(container.raw)} stored as they are; "
        f"{container.file_bytes:,} bytes ({dense_bytes / container.file_bytes:.1f}x smaller than the tensors' "
        f"{dense_bytes:,} bytes)"
    )


@main.command("decode")
@input_argument
@output_option
@force_option
@user_errors
def decode_command(input_path: Path, output_path: Path, force: bool) -> None:
    """Decode a container back to a .safetensors state dict, bit for bit."""
    check_output_path(output_path, inputs=(input_path,), force=force)
    tensors, metadata = decode_with_metadata(input_path)
    save_state_dict(tensors, output_path, metadata)
    click.echo(f"wrote {output_path}: {len(tensors)} tensors")


@main.command()
@click.argument("file_path", metavar="FILE", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "all_tensors", is_flag=True, help="List biases, norms and buffers too.")
@click.option("--codebooks", is_flag=True, help="Print the codebook of every quantized layer.")
@user_errors
def inspect(file_path: Path, as_json: bool, all_tensors: bool, codebooks: bool) -> None:
    """Per-layer statistics of a weights file or a container.

    Weights files: shape, kind, parameters, nonzeros, sparsity, distinct values, bits. Containers:
    nonzeros, fillers, coded bits per nonzero next to the entropy, bytes by component, ratio to fp32.
    """
    if file_path.is_file() and is_container(file_path):
        coded = inspect_container(read_container(file_path))
        click.echo(coded.to_json() if as_json else f"{file_path}\n{coded.to_markdown()}")
        return
    tensors, metadata = load_state_dict(file_path)
    report = inspect_state_dict(tensors, metadata, file_path.stat().st_size)
    if as_json:
        click.echo(report.to_json())
        return
    click.echo(f"{file_path}")
    click.echo(report.to_markdown(all_tensors=all_tensors))
    if codebooks:
        click.echo("\n" + (report.codebooks_text() or "no quantized layers"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
