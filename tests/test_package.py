import subprocess
import sys


def test_import_is_lean() -> None:
    code = (
        "import sys, vidcompress, vidcompress.cli;"
        "heavy = [m for m in ('cupy', 'matplotlib', 'av', 'sklearn') if m in sys.modules];"
        "assert not heavy, heavy;"
        "import torch; assert not torch.cuda.is_initialized()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vidcompress.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert "vidcompress" in result.stdout
