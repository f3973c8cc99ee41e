"""editable_vision: Editable Training and Editable Fine-Tuning of image classifiers (paper sections 4.1-4.3).

    from editable_vision import load, make_editable, cifar_resnet18

    editable = load("runs/editable.pt")          # model + trained editor from a checkpoint
    result = editable.edit(image, 3)              # image [C, H, W] -> class 3; EditResult(params, success, l_e, steps)
    with editable.apply(result):                  # in place; undone on exit
        predictions = editable.predict(images)

Command line: ``python -m editable_vision {train,finetune,evaluate,edit} --help``.
"""
from .api import VisionEditable, make_editable
from .checkpoint import load, save
from .data import VisionData, load_cifar10, load_data, load_digits, load_image_folder
from .models import ExtraLayer, build_model, cifar_resnet18, densenet169, resnet18, with_extra_layer
from .train import TrainConfig, Trainer

__all__ = [
    "ExtraLayer", "TrainConfig", "Trainer", "VisionData", "VisionEditable", "build_model",
    "cifar_resnet18", "densenet169", "load", "load_cifar10", "load_data", "load_digits", "load_image_folder",
    "make_editable", "resnet18", "save", "with_extra_layer",
]
