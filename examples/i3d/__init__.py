"""DeepMind's Kinetics-400 I3D, a real trained 3D CNN, compressed with vidcompress's public API.

`python -m examples.i3d predict` shows the dense model's answers on the ten real clips;
`python -m examples.i3d compress --sparsity ... --bits ... -o FILE.vcz` compresses it and compares.
The fixtures come from `python -m examples.real fetch i3d clips`.
"""
