"""One module per raw layout. Each adapter module defines

    NAME: str            the adapter's name in config (`datasets.<name>.adapter`)
    LAYOUT: str          one line: what the raw folder must contain
    SOURCE: str          one line: where the data is obtained
    needs_root: bool     False only for generated data (synthetic)
    def locate(root: Path) -> Path
        the folder the archive unpacks to, accepting one level above or below;
        raises LayoutError (one line: what was expected where) otherwise
    def prepare(options: dict, root: Path | None, out: Path, threads: int, log) -> dict
        reads the raw layout, writes the prepared store of expmap.data.store into `out`
        (images.npy through StoreWriter, then write_prepared) and returns the report

Adapters import no torch: the workflow imports this package to check inputs at start-up.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from expmap.errors import UserError


class LayoutError(UserError):
    """Raw data that does not look like the layout: the message is the one line to show."""


ADAPTER_MODULES = {
    "synthetic": "expmap.data.adapters.synthetic",
    "ckplus": "expmap.data.adapters.ckplus",
    "oulu_casia": "expmap.data.adapters.oulu_casia",
    "rafdb": "expmap.data.adapters.rafdb",
    "affectnet": "expmap.data.adapters.affectnet",
    "imagefolder": "expmap.data.adapters.imagefolder",
}


def adapter(name: str):
    if name not in ADAPTER_MODULES:
        raise LayoutError(f"unknown adapter {name!r}; known: {', '.join(sorted(ADAPTER_MODULES))}")
    return importlib.import_module(ADAPTER_MODULES[name])


def missing_data_message(dataset: str, adapter_name: str, root: str | None) -> str | None:
    """None when the raw data of `dataset` is in place, else the one line telling what to do."""
    module = adapter(adapter_name)
    if not module.needs_root:
        return None
    key = f"datasets.{dataset}.root"
    if not root:
        return (f"{key} is not set: it must name {module.LAYOUT}; obtain it from {module.SOURCE} "
                "(`make demo` needs no data)")
    try:
        module.locate(Path(root).expanduser())
    except LayoutError as error:
        return (f"{key} = {root}: {error}; it must hold {module.LAYOUT}; obtain it from "
                f"{module.SOURCE} (`make demo` needs no data)")
    return None
