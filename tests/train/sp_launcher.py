"""`python sp_launcher.py ATTENTION ARGS…`: `train cpt ARGS…` with ATTENTION as DeepSpeed-Ulysses' core attention.

Accelerate 1.15 (`DeepSpeedSequenceParallelConfig.__post_init__`) accepts only `flash_attention_2`,
`flash_attention_3`, `sdpa` or a Hub flash-attn kernel as `parallelism_config_sp_attn_implementation`, while
DeepSpeed's `UlyssesSPAttentionHF.register_with_transformers` takes any registered attention function. On a CPU
none of Accelerate's names keeps packed units apart (flash-attn needs CUDA; sdpa sees one causal sequence), so
this launcher lets Accelerate check `sdpa` and then hands DeepSpeed ATTENTION: everything else is the code that
`accelerate launch -m hf_entropylong.train.cpt` runs.
"""

import os
import sys

from accelerate.utils.dataclasses import DeepSpeedSequenceParallelConfig

from hf_entropylong.train import cpt

ENV = "PARALLELISM_CONFIG_SP_ATTN_IMPLEMENTATION"
accelerate_check = DeepSpeedSequenceParallelConfig.__post_init__


def post_init(self):
    os.environ[ENV] = "sdpa"
    accelerate_check(self)
    self.sp_attn_implementation = sys.argv[1]


if __name__ == "__main__":
    DeepSpeedSequenceParallelConfig.__post_init__ = post_init
    cpt.main(sys.argv[2:])
