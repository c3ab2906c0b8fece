"""The packages a training run's settings need, checked before the model loads.

A recipe's settings can name libraries that no default install has: `report_to` integrations (e.g. tensorboard,
whose callback the Trainer builds at construction), Liger's kernels (`liger_kernels`), DeepSpeed (an accelerate
config with `distributed_type: DEEPSPEED`). [`check_run_packages`] finds each one missing before the model is
loaded — on a multi-GPU launch that is minutes, and every rank would fail the same way — and names, in one line,
the extra of this package that brings it, read from the installed package's own metadata (`setup.cfg`'s
`extras_require`), so the message can never disagree with what `pip install "hf_entropylong[EXTRA]"` installs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DISTRIBUTION = "hf_entropylong"
# The `report_to` names whose PyPI package is not the name itself.
REPORT_TO_PACKAGES = {"comet_ml": "comet-ml", "azure_ml": "azureml-core", "flyte": "flytekit"}
# Extras named first when several bring a package: the user-facing ones before the test tooling.
DEV_EXTRA = "dev"


def extras_providing(package: str) -> list[str]:
    """The extras of the installed `hf_entropylong` that list `package`, user-facing ones first (`dev` last)."""
    declared = importlib.metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or []
    extras = []
    for line in importlib.metadata.requires(DISTRIBUTION) or []:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) != canonicalize_name(package) or requirement.marker is None:
            continue
        for extra in declared:
            if extra not in extras and requirement.marker.evaluate({"extra": extra}):
                extras.append(extra)
    return sorted(extras, key=lambda extra: extra == DEV_EXTRA)


def run_packages(report_to: list[str], liger_kernels: bool, deepspeed: bool) -> dict[str, tuple[str, str]]:
    """What a run with these settings imports beyond the core dependencies.

    Returns:
        `dict[str, tuple[str, str]]`: PyPI package -> (the setting that needs it, the module it provides, or for
        `report_to` the integration's name).
    """
    needed = {}
    for integration in report_to:
        if integration not in ("none", "all"):
            package = REPORT_TO_PACKAGES.get(integration, integration)
            needed[package] = (f"report_to: {integration}", integration)
    if liger_kernels:
        needed["liger-kernel"] = ("liger_kernels: true", "liger_kernel")
    if deepspeed:
        needed["deepspeed"] = ("the accelerate config's DeepSpeed", "deepspeed")
    return needed


def missing_package_message(package: str, setting: str, source: str) -> str:
    """One line: which setting of `source` needs `package`, and the extra (or the pip command) that brings it."""
    extras = extras_providing(package)
    install = f'pip install "{DISTRIBUTION}[{extras[0]}]"' if extras else f"pip install {package}"
    brings = f"the [{extras[0]}] extra brings it" if extras else "no extra of hf_entropylong brings it"
    return f"{source}: {setting} needs the {package} package, which is not installed ({brings}): {install}"


def check_run_packages(report_to: list[str], liger_kernels: bool, source: str) -> None:
    """Refuse, in one line naming the extra that brings it, a package the run's settings need and lack.

    Args:
        report_to (`list[str]`): the training arguments' `report_to`.
        liger_kernels (`bool`): whether the run applies Liger's kernels.
        source (`str`): the recipe (or command) the settings came from, for the message.
    """
    from accelerate.utils import parse_flag_from_env
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    deepspeed = parse_flag_from_env("ACCELERATE_USE_DEEPSPEED")  # set by accelerate launch from its config
    available = set(get_available_reporting_integrations())
    for package, (setting, module) in run_packages(report_to, liger_kernels, deepspeed).items():
        if setting.startswith("report_to"):  # transformers' own test: tensorboard also counts as tensorboardX
            installed = module in available
        else:
            installed = importlib.util.find_spec(module) is not None
        if not installed:
            raise ValueError(missing_package_message(package, setting, source))
