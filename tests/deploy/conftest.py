from pathlib import Path

import pytest

ASSET = Path(__file__).resolve().parents[2] / "assets" / "act_edge"


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """The shipped ACT exported once (split layout, fp32)."""
    from edgevla.deploy.export import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "act_split"
    export_bundle(ExportConfig(checkpoint=ASSET, out=out, parity_observations=2))
    return out


@pytest.fixture(scope="session")
def torch_runner():
    from edgevla.policies.runner import TorchPolicyRunner

    return TorchPolicyRunner.from_checkpoint(ASSET)
