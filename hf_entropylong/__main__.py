"""`python -m hf_entropylong COMMAND ...`: the `hf-entropylong` command, for launchers that start a module
(`accelerate launch -m hf_entropylong build ...`, `torchrun ... -m hf_entropylong build ...`)."""

from hf_entropylong.cli import main

main()
