"""SillyTavern expression sprites: one image per expression label, named by the label.

SillyTavern (checked against 1.12's `src/endpoints/sprites.js` and the expressions extension) lists
a character's sprites from `data/<user>/characters/<character name>/`, taking each image's file
name without extension, lowercased, as its label; its "upload sprite pack" button takes a ZIP whose
image entries are named the same way. We write both: the folder, and the same files as a ZIP.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from charforge.export.pack import Format, Pack, write_file

# A fixed timestamp keeps the ZIP byte-identical across runs of the same pack.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def write(pack: Pack, out: Path) -> list[Path]:
    folder = out / pack.folder_name
    written = [write_file(folder / f"{s.label}.png", s.picture.read_bytes()) for s in pack.sprites]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for sprite in pack.sprites:
            info = zipfile.ZipInfo(f"{sprite.label}.png", date_time=_ZIP_TIME)
            archive.writestr(info, sprite.picture.read_bytes())
    written.append(write_file(out / f"{pack.folder_name}.zip", buffer.getvalue()))
    return written


FORMAT = Format(
    name="sillytavern",
    description="SillyTavern expression sprites: <name>/<label>.png and <name>.zip for its sprite-pack upload",
    default_set="sillytavern",
    music=False,
    write=write,
)
