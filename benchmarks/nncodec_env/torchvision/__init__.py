"""Stand-in for torchvision inside the NNCodec comparison environment only.

NNCodec imports torchvision's datasets and transforms when it is imported, for its ImageNet / CIFAR /
VOC examples (building some transform pipelines at import); the comparison never runs them, and
PyPI's torchvision is a CUDA build that would replace the environment's CPU torch. Objects from here
can be built, but applying one, or building a dataset, raises.
"""

import types


def _unavailable(*args, **kwargs):
    raise RuntimeError("torchvision is not installed in the NNCodec comparison environment")


class _Placeholder:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        _unavailable()


class _Anything(types.ModuleType):
    """A module whose every attribute is a placeholder, besides those given."""

    def __init__(self, name, **attributes):
        super().__init__(name)
        self.__dict__.update(attributes)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder


class ImageFolder:
    def __init__(self, *args, **kwargs):
        _unavailable()


datasets = _Anything("torchvision.datasets", ImageFolder=ImageFolder)
transforms = _Anything("torchvision.transforms")
models = _Anything("torchvision.models")
