"""Vendor Pico CSS into static/vendor/pico/ from its npm package, fitted to the Content-Security-Policy.

    npm pack @picocss/pico@2.1.1 && python3 scripts/vendor-pico.py picocss-pico-2.1.1.tgz

Pico's icons (select chevron, checkbox tick, ...) are ``data:`` URLs, which ``img-src 'self'`` refuses; a
refused icon is also a console error that fails the browser tests. Each one is written to ``icons/NAME.svg``
(the light theme's; the portal sets ``data-theme="light"``) and the minified CSS points at that file instead.
Everything else is Pico's file byte for byte.
"""

from __future__ import annotations

import re
import sys
import tarfile
import urllib.parse
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "static" / "vendor" / "pico"
ICON = re.compile(r'--pico-icon-([a-z]+):url\("data:image/svg\+xml,([^"]*)"\)')


def main(tgz: str) -> int:
    with tarfile.open(tgz) as archive:
        css = archive.extractfile("package/css/pico.min.css").read().decode()  # type: ignore[union-attr]
        licence = archive.extractfile("package/LICENSE.md").read()  # type: ignore[union-attr]
    (OUT / "icons").mkdir(parents=True, exist_ok=True)
    light_start = css.find(":root:not([data-theme=dark]),[data-theme=light]{")
    light_end = css.find("}", light_start)
    root_end = css.find("}")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        in_light_or_root = match.start() < root_end or light_start < match.start() < light_end
        if in_light_or_root:
            (OUT / "icons" / f"{name}.svg").write_text(urllib.parse.unquote(match.group(2)))
        return f'--pico-icon-{name}:url("/static/vendor/pico/icons/{name}.svg")'

    patched = ICON.sub(replace, css)
    assert "data:" not in patched, "a data: URL is left; the CSP would refuse it"
    (OUT / "pico.min.css").write_text(patched)
    (OUT / "LICENSE.md").write_bytes(licence)
    print(f"wrote {OUT}/pico.min.css and {len(list((OUT / 'icons').iterdir()))} icons")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
