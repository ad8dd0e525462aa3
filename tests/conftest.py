"""Test-session environment: no test can reach the real Hugging Face Hub, whatever the caller exported.

HF libraries read these variables once, at import, so they are set here before anything imports them.
`HF_ENDPOINT` points at a port on 127.0.0.1 reserved for the Hub-protocol test server (`tests/hub_server.py`):
a test that forgets to mock the Hub fails fast with a refused connection instead of hanging. The caller's offline
switches and cache locations are dropped, so the suite behaves the same with `HF_HUB_OFFLINE=1` exported (what an
offline user sets): the Hub tests talk to the local server, and tests that need offline mode set it themselves.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Variables of the caller that would change what the HF libraries do here (offline mode, other caches or tokens).
_CALLER_HF_VARIABLES = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_EVALUATE_OFFLINE",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_DATASETS_CACHE",
    "HF_ASSETS_CACHE",
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_DATASETS_DISABLE_PROGRESS_BARS",
    "TENSORBOARD_LOGGING_DIR",
)
for _name in _CALLER_HF_VARIABLES:
    os.environ.pop(_name, None)

_HF_HOME = Path(tempfile.mkdtemp(prefix="hf-active-synth-tests-"))
os.environ["HF_HUB_TEST_PORT"] = str(_free_port())
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{os.environ['HF_HUB_TEST_PORT']}"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HOME"] = str(_HF_HOME)
os.environ["HF_DATASETS_CACHE"] = str(_HF_HOME / "datasets")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The test models are tiny: one intra-op thread is as fast, and it cannot be oversubscribed when tests or
# subprocesses (accelerate launch) run side by side on a small machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["WANDB_DISABLED"] = "true"

import pytest  # noqa: E402
from endpoint_server import endpoint_server  # noqa: E402, F401  (`transformers serve` of a tiny chat model)
from hub_server import hub_server  # noqa: E402, F401  (the Hub-protocol test server fixture)

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
SST2_DIR = SHARED_DIR / "data" / "sst2"


@pytest.fixture(scope="module")
def single_torch_thread():
    """One intra-op torch thread for the module's tests (restored after)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def paired_checker() -> Path:
    """The independent statistics checker `shared/tools/paired.py`; skips the test when it is absent."""
    path = SHARED_DIR / "tools" / "paired.py"
    if not path.is_file():
        pytest.skip(f"the independent checker is not at {path} (the shared folder is absent)")
    return path


@pytest.fixture
def sst2_dir() -> Path:
    """The shared SST-2 folder (`train.tsv`, `dev.tsv`, `test.tsv`); skips the test when it is absent."""
    if not (SST2_DIR / "train.tsv").is_file():
        pytest.skip(f"SST-2 is not at {SST2_DIR} (the shared data folder is absent)")
    return SST2_DIR
