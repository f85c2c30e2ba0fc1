import pytest

from tests import netlab

_netns_reason: list = []


def _netns_skip_reason():
    if not _netns_reason:
        _netns_reason.append(netlab.netns_unavailable())
    return _netns_reason[0]


@pytest.fixture
def lab():
    reason = _netns_skip_reason()
    if reason:
        pytest.skip(reason)
    lab = netlab.Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def net(lab):
    """The standard agent / gateway / internet topology."""
    return netlab.standard(lab)
