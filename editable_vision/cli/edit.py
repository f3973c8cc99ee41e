"""``edit``: make a checkpoint's model classify one image as a given label, report the prediction and the
test error before and after, and save the edited model."""
from __future__ import annotations

import argparse
import os

import torch

from editable_core import save_atomically
from editable_core.errors import EditFailed, InputError
from editable_core.files import load_torch_file

from .. import report
from ..checkpoint import editable_from_checkpoint, editable_payload, read_checkpoint
from ..data import VisionData, read_image, stack
from .checks import check_output_file
from .options import add_data_options, add_editor_options, add_run_options, data_spec_from_args, emit, open_data
from .options import resolve_device


def add_parser(commands: argparse._SubParsersAction) -> None:
    ed = commands.add_parser("edit", help="edit one image's label in a checkpoint and save the edited model",
                             description="Edit a model so that one image gets the given label; prints the "
                                         "prediction and test error before and after, saves the edited model.")
    ed.add_argument("--checkpoint", required=True, metavar="PATH")
    image = ed.add_mutually_exclusive_group(required=True)
    image.add_argument("--image", help="an image file (png/jpg, preprocessed like the test set) or a .pt "
                                       "tensor [C, H, W] already preprocessed")
    image.add_argument("--index", type=int, help="the test-set image with this index")
    ed.add_argument("--label", type=int, required=True, help="the class the image must get")
    group = ed.add_argument_group("editing (default: the checkpoint's own, its trained hyper-parameters included)")
    group.add_argument("--part", help="editable part (default: the checkpoint's)")
    add_editor_options(group, trained=True)
    ed.add_argument("--out", metavar="PATH",
                    help="write the edited model here, only if the edit succeeds (else exit status 3)")
    add_data_options(ed, default=None), add_run_options(ed)
    ed.set_defaults(command_function=cmd_edit)


def _load_image(path: str, data: VisionData) -> torch.Tensor:
    if not os.path.isfile(path):
        raise InputError(f"--image {path}: file does not exist")
    if path.endswith(".pt"):
        image = load_torch_file(path)
        if not isinstance(image, torch.Tensor) or not image.is_floating_point():
            raise InputError(f"--image {path}: expected a float tensor [C, H, W], got "
                             f"{getattr(image, 'dtype', type(image).__name__)}")
        return image
    return data.preprocess(read_image(path, mode=None))


def cmd_edit(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    check_output_file("--out", args.out)
    check_output_file("--json", args.json)
    payload = read_checkpoint(args.checkpoint)
    data = open_data(data_spec_from_args(args, payload.get("data")), args.download)
    editable = editable_from_checkpoint(payload, part=args.part, editor=args.editor, lr=args.edit_lr,
                                        max_steps=args.edit_max_steps, device=device)
    if args.index is not None:
        if not 0 <= args.index < len(data.test):
            raise ValueError(f"--index {args.index} out of range: the test set has {len(data.test)} images")
        image = data.test[args.index][0]
    else:
        image = _load_image(args.image, data)
    images, labels = stack(data.test, workers=args.workers)
    before = int(editable.predict(image))
    result = editable.edit(image, args.label)
    after = int(editable.predict(image, result.params))
    error_before = (editable.predict(images).cpu() != labels).float().mean().item()
    error_after = (editable.predict(images, result.params).cpu() != labels).float().mean().item()
    figures = {"label": args.label, "prediction_before": before, "prediction_after": after,
               "success": result.success, "steps": result.steps, "test_error_before": error_before,
               "test_error_after": error_after, "part": editable.part, "editor": editable.editor.name,
               "out": args.out}
    text = report.markdown_table(
        ["Label", "Prediction before", "Prediction after", "Success", "Num Steps", "Test error before",
         "Test error after"],
        [[args.label, before, after, result.success, result.steps, report.percent(error_before),
          report.percent(error_after)]])
    if args.out and not result.success:
        print(text)
        raise EditFailed(f"the edit did not succeed within {editable.max_steps} steps; {args.out} was not written "
                         "(try more --edit-max-steps or another --edit-lr)")
    if args.out:
        edited = editable_payload(editable, payload["model_spec"], result.params)
        edited["data"] = payload.get("data")
        save_atomically(edited, args.out)
        text += f"\n\nedited model: {args.out}"
    emit(args, text, figures)
