"""`--method fp`. Importing the package registers FP's checkpoint format with train/networks.py: its
checkpoints hold a continuous-time network, which load_model refuses, naming FP's own loader."""
from saf.train.networks import register_own_format

FP_METHOD = "fp"

register_own_format(FP_METHOD, "an FP checkpoint (--method fp) holds a continuous-time network: load it "
                               "with saf.train.methods.fp.checkpoint.load_fp_checkpoint")
