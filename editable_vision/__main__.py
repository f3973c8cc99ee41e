"""``python -m editable_vision {train,finetune,evaluate,edit} ...``"""
import sys

from .cli import main

sys.exit(main())
