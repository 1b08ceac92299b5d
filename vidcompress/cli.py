"""The `vidcompress` command line: prune, quantize, encode, decode, inspect."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vidcompress._version import __version__
from vidcompress.errors import VidcompressError
from vidcompress.io import check_output_path, load_state_dict, save_state_dict
from vidcompress.metadata import with_stage
from vidcompress.prune.pruner import DEFAULT_SPARSITY, PruneConfig, prune_state_dict
from vidcompress.report import inspect_state_dict
from vidcompress.rules import SPARSITY, LayerRules

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
@click.argument("file_path", metavar="FILE", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "all_tensors", is_flag=True, help="List biases, norms and buffers too.")
@user_errors
def inspect(file_path: Path, as_json: bool, all_tensors: bool) -> None:
    """Per-layer shape, kind, parameters, nonzeros, sparsity and distinct values of FILE."""
    tensors, metadata = load_state_dict(file_path)
    report = inspect_state_dict(tensors, metadata, file_path.stat().st_size)
    if as_json:
        click.echo(report.to_json())
        return
    click.echo(f"{file_path}")
    click.echo(report.to_markdown(all_tensors=all_tensors))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
