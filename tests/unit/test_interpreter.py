"""relay/interpreter.py: [workers] gil_switch_ms (the daemon's sys.setswitchinterval) and the
start-up heap frozen out of the collector's reach once the daemon serves."""
from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.config import ConfigError, load_config
from relay.instance import init_instance
from relay.runtime import Runtime
from tests.unit.test_config import edited, write


@pytest.fixture
def template(dev_instance: Path) -> str:
    return (dev_instance / "relay.toml").read_text(encoding="utf-8")


@pytest.fixture
def restore_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_default_and_value(tmp_path: Path, template: str) -> None:
    assert load_config(write(tmp_path, template)).workers.gil_switch_ms == 1.0
    cfg = load_config(write(tmp_path, edited(template, "gil_switch_ms = 1.0", "gil_switch_ms = 2")))
    assert cfg.workers.gil_switch_ms == 2.0


@pytest.mark.parametrize("value", ["0", "-1", "500", '"1"', "nan"])
def test_bad_values_name_the_field(tmp_path: Path, template: str, value: str) -> None:
    with pytest.raises(ConfigError, match=r"^workers\.gil_switch_ms:"):
        load_config(write(tmp_path, edited(template, "gil_switch_ms = 1.0", f"gil_switch_ms = {value}")))


async def test_the_daemon_runtime_applies_it(tmp_path: Path, restore_interval: None) -> None:
    cfg_path = init_instance(tmp_path / "inst")  # its own instance: the runtime opens a store in it
    cfg_path.write_text(edited(cfg_path.read_text(encoding="utf-8"), "gil_switch_ms = 1.0", "gil_switch_ms = 2.5"),
                        encoding="utf-8")
    sys.setswitchinterval(0.005)
    rt = await Runtime.start(load_config(cfg_path))
    try:
        assert sys.getswitchinterval() == pytest.approx(0.0025)
    finally:
        assert rt.pools is not None
        rt.pools.shutdown()
        await rt.store.close()


async def test_the_daemon_freezes_its_start_up_heap_once_it_serves(tmp_path: Path, restore_interval: None) -> None:
    from relay.daemon import Daemon
    cfg_path = init_instance(tmp_path / "inst")
    gc.unfreeze()
    seen: list[int] = []

    def ready(d: Daemon) -> None:
        seen.append(gc.get_freeze_count())
        d.request_stop()

    try:
        await Daemon(load_config(cfg_path)).serve_forever(ready)
    finally:
        gc.unfreeze()
    assert seen and seen[0] > 10_000  # modules, tables, contexts: the whole start-up heap
