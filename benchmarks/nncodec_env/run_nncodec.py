"""NNCodec's side of `benchmarks/nncodec.py`, run by the Python of NNCodec's own environment.

Reads a float32 .safetensors file, and for each QP: encodes it with NNCodec's data-free lossy mode
(uniform quantization with dependent quantization and DeepCABAC; its defaults otherwise), decodes the
bitstream, writes the bitstream and the decoded tensors (.safetensors) to the output folder, and prints
one JSON line: qp, bytes, encode and decode seconds. Nothing here imports vidcompress.

    python run_nncodec.py IN.safetensors OUT_FOLDER QP [QP ...]
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def main() -> None:
    source, out, qps = Path(sys.argv[1]), Path(sys.argv[2]), [int(q) for q in sys.argv[3:]]
    import nncodec.nn as nnc_nn

    tensors = load_file(source)
    for qp in qps:
        start = time.perf_counter()
        bitstream = nnc_nn.encode(dict(tensors), args={"qp": qp, "verbose": False, "results": str(out)})
        encoded = time.perf_counter()
        decoded = nnc_nn.decode(bitstream, args={"verbose": False})
        finished = time.perf_counter()
        (out / f"qp{qp}.nnc").write_bytes(bytes(bitstream))
        save_file(
            {
                name: np.ascontiguousarray(decoded[name], dtype=np.float32).reshape(tensors[name].shape)
                for name in tensors
            },
            out / f"qp{qp}.safetensors",
        )
        print(
            json.dumps(
                {"qp": qp, "bytes": len(bitstream), "encode_s": encoded - start, "decode_s": finished - encoded}
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
