"""The `vidcompress` command line: prune, quantize, encode, decode, inspect, diff.

Only click is imported up front; each command imports the library (and torch) when it runs, so
`vidcompress --help` answers at once. Every user error is one `error:` line and exit code 2, click's
own usage errors included, and nothing is written.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vidcompress._version import __version__

if TYPE_CHECKING:
    import torch

Command = TypeVar("Command", bound=Callable[..., Any])

SAFETENSORS = ".safetensors"
CONTAINER = ".vcz"
# The defaults, repeated here so that --help needs no import of the library (a test keeps them equal).
DEFAULT_SPARSITY = "conv=0.3,fc=0.3"
PAPER_SPARSITY = "conv=0.9,fc=0.95"
DEFAULT_BITS = "conv=8,fc=8"
PAPER_BITS = "conv=8,fc=5"
DEFAULT_INDEX_BITS = "conv=8,fc=5,emb=5"


class CommandError(click.ClickException):
    """A user error: printed as one line, exit code 2 (like click's own usage errors)."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class OneLineErrors(click.Group):
    """A group whose usage errors (unknown option, missing argument, ...) print one `error:` line."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as error:
            where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
            click.echo(f"error: {where}{error.format_message()}", err=True)
            sys.exit(2)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)


def user_errors(command: Command) -> Command:
    """Turn the package's errors into one-line CLI errors with exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vidcompress.errors import VidcompressError

        try:
            return command(*args, **kwargs)
        except VidcompressError as error:
            raise CommandError(str(error)) from None

    return wrapper  # type: ignore[return-value]


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidcompress")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or notes on stderr.")
@click.pass_context
def main(context: click.Context, quiet: bool) -> None:
    """Compress PyTorch weights: prune, quantize (k-means weight sharing), encode (Huffman)."""
    context.obj = {"quiet": quiet}


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
raw_dtype_option = click.option(
    "--raw-dtype",
    type=click.Choice(["float16", "bfloat16"]),
    help="Store the tensors that are not layer weights (biases, norms, buffers) in this dtype: half their bytes, "
    "decoded back to their own dtype, rounded. [default: as they are]",
)


def config_option(kind: str) -> Callable[[Command], Command]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        help=f"A {kind} as .json or .toml (its to_json() form); options given here override its fields.",
    )


def _quiet() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and context.find_root().obj and context.find_root().obj.get("quiet"))


def _progress() -> bool:
    """Long steps report on stderr unless -q: a bar on a terminal, a line every few seconds elsewhere."""
    return not _quiet()


def _note(text: str) -> None:
    if not _quiet():
        click.echo(text, err=True)


def _check_output(output_path: Path, input_path: Path, suffix: str, force: bool, what: str) -> None:
    from vidcompress.io import check_output_path

    if output_path.is_dir():
        raise CommandError(f"{output_path}: is a directory; this command writes {what} (name it *{suffix})")
    if output_path.suffix != suffix:
        raise CommandError(f"{output_path}: this command writes {what}; name the output *{suffix}")
    check_output_path(output_path, inputs=(input_path,), force=force, force_hint="pass --force")


def _check_extra_outputs(paths: tuple[tuple[Path | None, str], ...], taken: tuple[Path, ...], force: bool) -> None:
    """Check the side outputs (`--report`, `--plot`) before any work: suffix, folder, not an input or
    another output, not an existing file unless --force; plots also need matplotlib."""
    from vidcompress.io import check_output_path

    for path, suffix in paths:
        if path is None:
            continue
        if path.suffix != suffix:
            raise CommandError(f"{path}: name it *{suffix}")
        check_output_path(path, inputs=taken, force=force, force_hint="pass --force")
        taken = (*taken, path)
        if suffix == ".png":
            from vidcompress.plots import pyplot

            pyplot()


def _check_plot_folder(folder: Path, force: bool) -> None:
    """A folder for per-layer plots: an existing folder (empty unless --force) or a new one whose
    nearest existing parent is a writable folder; matplotlib importable."""
    from vidcompress.io import check_output_folder
    from vidcompress.plots import pyplot

    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise CommandError(f"{folder}: exists and is not empty; pass --force to write plots into it")
    check_output_folder(folder, folder)  # an existing file named so is click's error, before this
    pyplot()


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A weights file (not a container), with torch.nn.utils.prune leftovers folded, that holds at
    least one compressible weight."""
    from vidcompress.codec import is_container
    from vidcompress.io import fold_pruning_leftovers, load_state_dict
    from vidcompress.layers import state_dict_layers

    if path.is_file() and is_container(path):
        raise CommandError(f"{path}: is a vidcompress container; 'vidcompress decode' it to a {SAFETENSORS} first")
    tensors, metadata = load_state_dict(path)
    tensors, folded = fold_pruning_leftovers(tensors)
    if folded:
        _note(f"note: folded torch.nn.utils.prune leftovers (_orig * _mask) into {len(folded)} weights")
    if not state_dict_layers(tensors):
        raise CommandError(
            f"{path}: holds no compressible weight (a floating-point tensor of 2+ dimensions named *weight: "
            "Linear, Conv, Embedding); nothing to do"
        )
    return tensors, metadata


def _stage_config(kind: Any, config_path: Path | None, **options: Any) -> Any:
    """The stage's config: the file's (if any), with the options given on the command line over it."""
    given = {name: value for name, value in options.items() if value is not None}
    if config_path is None:
        return kind(**given)
    return kind.from_dict({**kind.from_file(config_path).to_dict(), **given})


def _default_note(given: str | None, default: str, option: str, paper: str, config_path: Path | None) -> None:
    if given is None and config_path is None:
        _note(f"no {option} given: using {default} (embeddings untouched); T-C3D's setting is {option} '{paper}'")


@main.command()
@input_argument
@output_option
@click.option(
    "--sparsity",
    help=f"Per-layer targets: kinds (conv, fc, emb) or globs over parameter names, later rules win, "
    f"0 or 'off' leaves a layer dense; or a .json/.toml rule file. [default: {DEFAULT_SPARSITY}; "
    f"T-C3D: {PAPER_SPARSITY}]",
)
@config_option("PruneConfig")
@force_option
@user_errors
def prune(input_path: Path, output_path: Path, sparsity: str | None, config_path: Path | None, force: bool) -> None:
    """One-shot magnitude pruning of a weights file (no data needed).

    IN is a .safetensors file or a .pt/.pth state dict (read with weights_only); the output is a
    .safetensors file that loads into the original model, zeros in place.
    """
    from vidcompress.io import save_state_dict
    from vidcompress.metadata import with_stage
    from vidcompress.prune.pruner import PruneConfig, prune_state_dict

    _check_output(output_path, input_path, SAFETENSORS, force, "a weights file")
    config = _stage_config(PruneConfig, config_path, sparsity=sparsity)
    tensors, metadata = _read_weights(input_path)
    _default_note(sparsity, DEFAULT_SPARSITY, "--sparsity", PAPER_SPARSITY, config_path)
    pruned, targets = prune_state_dict(tensors, config.sparsity, progress=_progress(), inplace=True)
    record = {"config": config.to_dict(), "sparsity": targets}
    save_state_dict(pruned, output_path, with_stage(metadata, "prune", record, str(input_path)))
    total = sum(pruned[name].numel() for name in targets)
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
    help=f"Bits per layer (1-16; 2^b - 1 centroids plus zero): kinds or globs, later rules win, "
    f"'off' keeps a layer in full precision; or a .json/.toml rule file. [default: {DEFAULT_BITS}; "
    f"T-C3D: {PAPER_BITS}]",
)
@click.option(
    "--init",
    type=click.Choice(["linear", "density", "random", "k-means++"]),
    help="Centroid initialisation. [default: linear]",
)
@click.option("--max-iter", type=click.IntRange(min=1), help="Cap on k-means iterations. [default: 300]")
@click.option(
    "--method",
    type=click.Choice(["kmeans", "uniform", "ecsq"]),
    help="Quantizer: k-means (Deep Compression's), uniform cells, or entropy-constrained (ECSQ: fewer coded "
    "bits at a given error). [default: kmeans]",
)
@click.option(
    "--lagrangian",
    type=click.FloatRange(min=0.0),
    help="ECSQ's lambda, relative to each layer's weight variance (0.01-0.05 is a useful range). [default: 0]",
)
@click.option(
    "--plots",
    "plot_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write a weight histogram with centroids per layer (PNG) into this folder.",
)
@config_option("QuantizeConfig")
@force_option
@user_errors
def quantize(
    input_path: Path,
    output_path: Path,
    bits: str | None,
    init: str | None,
    max_iter: int | None,
    method: str | None,
    lagrangian: float | None,
    plot_dir: Path | None,
    config_path: Path | None,
    force: bool,
) -> None:
    """Per-layer weight sharing of a weights file (zeros stay zero): k-means, uniform or ECSQ levels.

    Each selected layer of the output holds at most 2^b distinct values; the bits are recorded in
    the file's metadata. Fine-tuning the centroids needs data: use quantize_() in Python.
    """
    from vidcompress.io import save_state_dict
    from vidcompress.metadata import with_stage
    from vidcompress.quantize import QuantizeConfig, quantize_state_dict

    _check_output(output_path, input_path, SAFETENSORS, force, "a weights file")
    if plot_dir is not None:
        _check_plot_folder(plot_dir, force)
    config = _stage_config(
        QuantizeConfig, config_path, bits=bits, init=init, max_iter=max_iter, method=method, lagrangian=lagrangian
    )
    tensors, metadata = _read_weights(input_path)
    _default_note(bits, DEFAULT_BITS, "--bits", PAPER_BITS, config_path)
    # In place unless the histograms need the weights as they were: one copy of the model in memory.
    quantized, report = quantize_state_dict(tensors, config, progress=_progress(), inplace=plot_dir is None)
    # The codebooks are not repeated here: a layer's distinct values are its codebook.
    record = {
        "config": config.to_dict(),
        "layers": {layer.name: {"bits": layer.bits, "sse": layer.sse} for layer in report.layers},
    }
    if plot_dir is not None:
        from vidcompress.plots import plot_weight_histogram

        try:
            plot_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandError(f"{plot_dir}: cannot create it: {error.strerror or error}") from None
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
    help=f"Relative-index width per layer (1-16, or 'auto' for the smallest coded size). "
    f"[default: {DEFAULT_INDEX_BITS}]",
)
@click.option("--no-huffman", is_flag=True, help="Store every stream packed: the size before Huffman coding.")
@click.option(
    "--columns-only",
    is_flag=True,
    help="Walk every sparse layer column by column, as Deep Compression does (a file version-4 readers read); "
    "by default each layer also weighs the row walk and keeps whichever codes smaller.",
)
@click.option(
    "--bits",
    help="Layers to encode and their codebook bits, or 'raw' for pruned-only layers (values stored as they "
    "are); default: as recorded by 'vidcompress quantize', else the smallest width that holds each layer's "
    "distinct values. Other tensors are stored whole.",
)
@raw_dtype_option
@config_option("EncodeConfig")
@force_option
@user_errors
def encode_command(
    input_path: Path,
    output_path: Path,
    index_bits: str | None,
    no_huffman: bool,
    columns_only: bool,
    bits: str | None,
    raw_dtype: str | None,
    config_path: Path | None,
    force: bool,
) -> None:
    """Encode a quantized weights file into one container (relative index + Huffman).

    A selected layer with more than 2^b distinct values is an error: quantize it first.
    """
    from vidcompress.codec import EncodeConfig, encode

    _check_output(output_path, input_path, CONTAINER, force, "a container")
    config = _stage_config(
        EncodeConfig,
        config_path,
        bits=bits,
        index_bits=index_bits,
        huffman=False if no_huffman else None,
        row_walk=False if columns_only else None,
        raw_dtype=raw_dtype,
    )
    tensors, metadata = _read_weights(input_path)
    container = encode(tensors, output_path, config, metadata=metadata, progress=_progress())
    from vidcompress.layers import state_dict_layers

    left = [layer.name for layer in state_dict_layers(tensors) if layer.name not in {e.name for e in container.layers}]
    if left and config.bits is None:
        _note(
            f"note: {len(left)} compressible layers (e.g. {left[0]}) hold too many distinct values for a codebook "
            "and are stored as they are: quantize them first to compress them"
        )
    from vidcompress.report import size_change

    dense_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    click.echo(
        f"wrote {output_path}: {len(container.layers)} layers encoded, {len(container.raw)} stored as they are; "
        f"{container.file_bytes:,} bytes ({size_change(dense_bytes, container.file_bytes)} the tensors' "
        f"{dense_bytes:,} bytes)"
    )


def _whole_or_float(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _number_list(text: str | None, what: str, convert: Callable[[str], Any]) -> tuple[Any, ...] | None:
    """`2,4,8` or a range `2-8` (integers only) as a tuple; None stays None."""
    if text is None:
        return None
    try:
        if convert in (int, _whole_or_float) and re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", text):
            low, high = (int(part) for part in text.split("-"))
            return tuple(range(low, high + 1))
        return tuple(convert(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise CommandError(f"--{what} {text!r}: expected a comma-separated list of numbers") from None


@main.command("compress")
@input_argument
@output_option
@click.option("--target-size", help="Largest file to write: 5MB, 800kB, 2MiB or bytes.")
@click.option("--target-ratio", type=float, help="At least this many times smaller than the input's tensors.")
@click.option("--target-bits-per-param", type=float, help="At most this many bits per parameter of the model.")
@click.option(
    "--method",
    type=click.Choice(["kmeans", "uniform", "ecsq"]),
    help="Quantizer of every layer. [default: kmeans]",
)
@click.option("--lagrangian", type=click.FloatRange(min=0.0), help="ECSQ's lambda. [default: 0]")
@click.option(
    "--sparsities",
    help="Candidate magnitude-pruning sparsities per layer, comma-separated. "
    "[default: 0,0.3,0.5,0.6,0.7,0.75,0.8,0.85,0.9,0.93,0.95,0.97]",
)
@click.option(
    "--bits",
    "bits_list",
    help="Candidate bits per layer: a range 2-8 or a list 2,2.5,3 (a fractional b: the odd level count nearest "
    "2^b - 1). [default: 2-8; in half bits for uniform and ECSQ]",
)
@click.option(
    "--index-bits",
    help=f"Relative-index width per layer (rules, or 'auto'). [default: {DEFAULT_INDEX_BITS}]",
)
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="Write the allocation as Markdown.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Plot bytes and damage per layer (PNG).")
@click.option("--model", "model_spec", help="MODULE:CALLABLE that builds the architecture (with --calibration).")
@click.option(
    "--calibration", "calibration_path", type=click.Path(path_type=Path),
    help="A safetensors file of the model's input tensors: damage is measured output error, weights are "
    "solved on them (SparseGPT / GPTQ). Needs --model.",
)  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Calibration batch.")
@raw_dtype_option
@config_option("BudgetConfig")
@force_option
@user_errors
def compress_command(
    input_path: Path,
    output_path: Path,
    target_size: str | None,
    target_ratio: float | None,
    target_bits_per_param: float | None,
    method: str | None,
    lagrangian: float | None,
    sparsities: str | None,
    bits_list: str | None,
    index_bits: str | None,
    report_path: Path | None,
    plot_path: Path | None,
    model_spec: str | None,
    calibration_path: Path | None,
    batch_size: int,
    raw_dtype: str | None,
    config_path: Path | None,
    force: bool,
) -> None:
    """Compress a weights file to a size budget in one step: per-layer pruning and quantization chosen
    so that the container meets the target with the least estimated damage (data-free: each layer's
    relative squared error; with --model and --calibration: each layer's measured output error, and
    the calibrated solver's weights). The file written never exceeds the target.
    """
    from vidcompress.budget import BudgetConfig, Target, compress_to_budget
    from vidcompress.io import atomic_path

    given = [(kind, value) for kind, value in
             (("size", target_size), ("ratio", target_ratio), ("bits_per_param", target_bits_per_param))
             if value is not None]  # fmt: skip
    if len(given) != 1:
        raise CommandError("give exactly one of --target-size, --target-ratio, --target-bits-per-param")
    kind, value = given[0]
    target = Target.size(value) if kind == "size" else Target(kind, float(value))
    _check_output(output_path, input_path, CONTAINER, force, "a container")
    _check_extra_outputs(((report_path, ".md"), (plot_path, ".png")), (input_path, output_path), force)
    config = _stage_config(
        BudgetConfig, config_path, method=method, lagrangian=lagrangian, index_bits=index_bits, raw_dtype=raw_dtype,
        sparsities=_number_list(sparsities, "sparsities", float), bits=_number_list(bits_list, "bits", _whole_or_float),
    )  # fmt: skip
    if (model_spec is None) != (calibration_path is None):
        raise CommandError("--model and --calibration go together: the model runs on the calibration inputs")
    tensors, metadata = _read_weights(input_path)
    source: Any = tensors
    calibration = None
    if model_spec is not None and calibration_path is not None:
        from vidcompress.calibrate.inputs import build_model, load_weights, read_calibration

        source = build_model(model_spec)
        load_weights(source, tensors, str(input_path), model_spec)
        calibration = read_calibration(calibration_path, source, batch_size)
    # Every output is written to a temporary and all are renamed at the end: a failure leaves none.
    with contextlib.ExitStack() as outputs:
        container_path = outputs.enter_context(atomic_path(output_path))
        allocation, container = compress_to_budget(
            source, container_path, target, config, metadata=metadata, progress=_progress(), calibration=calibration
        )
        if report_path is not None:
            outputs.enter_context(atomic_path(report_path)).write_text(allocation.to_markdown() + "\n")
        if plot_path is not None:
            allocation.plot(outputs.enter_context(atomic_path(plot_path)), format="png")
    from vidcompress.report import size_change

    dense_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    if allocation.budget_bytes >= dense_bytes:
        _note(
            f"note: the target ({allocation.budget_bytes:,} bytes) is not below the input's {dense_bytes:,} bytes; "
            f"the file uses the least damaging candidates (at most {max(config.bits):g} bits)"
        )
    click.echo(allocation.to_markdown())
    click.echo(
        f"wrote {output_path}: {container.file_bytes:,} bytes for a budget of {allocation.budget_bytes:,} "
        f"({size_change(dense_bytes, container.file_bytes)} the tensors' {dense_bytes:,} bytes)"
    )


@main.command("decode")
@input_argument
@output_option
@force_option
@user_errors
def decode_command(input_path: Path, output_path: Path, force: bool) -> None:
    """Decode a container back to a .safetensors state dict, bit for bit."""
    from vidcompress.codec import decode_with_metadata
    from vidcompress.io import save_state_dict

    _check_output(output_path, input_path, SAFETENSORS, force, "a weights file")
    tensors, metadata = decode_with_metadata(input_path)
    save_state_dict(tensors, output_path, metadata)
    click.echo(f"wrote {output_path}: {len(tensors)} tensors")


@main.command()
@click.argument("a_path", metavar="A", type=click.Path(path_type=Path))
@click.argument("b_path", metavar="B", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def diff(a_path: Path, b_path: Path, as_json: bool) -> None:
    """What compression did, layer by layer: B (e.g. compressed) against the reference A.

    A and B are weights files or containers (decoded first). Per compressible layer: relative error,
    SQNR in dB, and each side's sparsity and bits (the codebook width its distinct values need).
    """
    from vidcompress.diff import diff_state_dicts

    report = diff_state_dicts(_read_any(a_path), _read_any(b_path))
    click.echo(report.to_json() if as_json else report.to_markdown())


def _read_any(path: Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors, or a container's decoded ones (wrapper prefixes removed either way)."""
    from vidcompress.codec import decode, is_container
    from vidcompress.io import load_state_dict, strip_wrapper_prefixes

    if path.is_file() and is_container(path):
        return strip_wrapper_prefixes(decode(path))
    return load_state_dict(path)[0]


@main.command()
@click.argument("file_path", metavar="FILE", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "all_tensors", is_flag=True, help="List biases, norms and buffers too.")
@click.option("--codebooks", is_flag=True, help="Print the codebook of every quantized layer.")
@user_errors
def inspect(file_path: Path, as_json: bool, all_tensors: bool, codebooks: bool) -> None:
    """Per-layer statistics of a weights file or a container.

    Weights files: shape, kind (and why a 2+-D tensor is left alone), parameters, nonzeros, sparsity,
    distinct values, bits. Containers: nonzeros, fillers, coded bits per nonzero next to the entropy,
    bytes by component (provenance metadata on its own line), ratio to fp32.
    """
    from vidcompress.codec import inspect_container, is_container, read_container
    from vidcompress.io import load_state_dict
    from vidcompress.report import inspect_state_dict

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
    main()
