"""Offline `dvc plots show`/`diff`: one self-contained HTML page and an SVG per Vega-Lite plot.

`dvc plots show` writes a page that loads Vega from a CDN, blank without internet. Here every
Vega(-Lite) spec DVC fills in is rendered to SVG by vl-convert (a bundled Vega engine, no browser,
no network) and image plots are inlined as data: URIs, so the page has no external reference.
Static SVG rather than a template with the Vega JavaScript inlined: the page needs no scripts
(its Content-Security-Policy forbids them), opens in any viewer, and the same SVG files serve as
the static image of each Vega-Lite plot. What is lost is DVC's hover tooltips and smoothing slider.

    python -m facerec.plots_page [REVISION ...] [--out dvc_plots/offline.html]
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import json
import logging
import mimetypes
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vl_convert

from facerec.atomic import atomic_path

log = logging.getLogger(__name__)

# Pixels per name on an axis of identities: room for a 10 px label, so 105 names stay legible.
NAME_STEP_PX = 14
# Nothing but inline styles and data: images may load, even if a spec tried to reach further.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def dvc_plots_json(revisions: list[str], images_dir: Path, repo: Path) -> dict:
    """`dvc plots show --json` (no revisions) or `dvc plots diff --json REVS`, parsed."""
    command = ["show"] if not revisions else ["diff", *revisions]
    result = subprocess.run([sys.executable, "-m", "dvc", "plots", *command, "--json", "-o", str(images_dir)],
                            cwd=repo, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"dvc plots {' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return json.loads(result.stdout)


def static_spec(spec: dict, step_px: int = NAME_STEP_PX) -> dict:
    """A copy fit for a still image: `step_px` per name on nominal axes, bars from zero."""
    spec = copy.deepcopy(spec)
    view = spec["spec"] if "facet" in spec else spec  # the confusion template facets by revision
    encoding, rows = view.get("encoding", {}), spec.get("data", {}).get("values", [])
    if view.get("mark") in ("bar", {"type": "bar"}):
        # DVC's bar templates drop the zero baseline for zooming; in a still image a bar's
        # length must be its value (from a 0.6 baseline, F1 0.7 looks a third of 0.9).
        for channel in ("x", "y"):
            if encoding.get(channel, {}).get("type") == "quantitative":
                encoding[channel].setdefault("scale", {})["zero"] = True
    for channel, size in (("x", "width"), ("y", "height")):
        field = encoding.get(channel, {}).get("field")
        if encoding.get(channel, {}).get("type") == "nominal" and field:
            # A pixel size, not {"step": ...}: Vega-Lite cannot step-size a faceted layer.
            categories = len({row.get(field) for row in rows})
            view[size] = max(300, step_px * categories)
            for layer in view.get("layer", []):  # DVC's confusion layer pins its own 300 px
                layer.pop(size, None)
    return spec


def vegalite_version(spec: dict) -> str | None:
    """Newest Vega-Lite vl-convert bundles of the spec's major version (DVC writes v5 specs)."""
    match = re.search(r"vega-lite/v(\d+)", spec.get("$schema", ""))
    versions = [v for v in vl_convert.get_vegalite_versions() if match and v.split(".")[0] == match.group(1)]
    return max(versions, key=lambda v: tuple(map(int, v.split(".")))) if versions else None


def drop_invisible(svg: str) -> str:
    """The SVG without marks nobody can see: hover targets (opacity 0) and empty labels."""
    # DVC's confusion template layers an invisible hover rect and an empty text on every cell:
    # at 105 × 105 identities that is 22,000 elements, most of a 9 MB page, useless when static.
    svg = re.sub(r'<path [^>]*\bopacity="0"[^>]*/>', "", svg)
    return re.sub(r"<text [^>]*/>", "", svg)


def render_svg(spec: dict) -> str:
    """SVG markup of a Vega or Vega-Lite spec; data must be inline (no URL may be fetched)."""
    if "vega-lite" in spec.get("$schema", ""):
        svg = vl_convert.vegalite_to_svg(static_spec(spec), vl_version=vegalite_version(spec),
                                         allowed_base_urls=[])
    else:
        svg = vl_convert.vega_to_svg(spec, allowed_base_urls=[])
    return drop_invisible(svg)


def data_uri(path: Path) -> str:
    """The file as a base64 data: URI, so the page carries its images inside."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def slug(title: str) -> str:
    """A file-name-safe form of a plot title."""
    return re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_").lower() or "plot"


def figure_html(entry: dict, svg_dir: Path, title: str) -> str:
    """One <figure>: a rendered Vega spec (SVG inline) or an image plot of one revision."""
    revisions = ", ".join(entry.get("revisions", []))
    if entry["type"] == "vega":
        svg = render_svg(entry["content"])
        (svg_dir / f"{slug(title)}.svg").write_text(svg, encoding="utf-8")
        body = re.sub(r"^<\?xml[^>]*>\s*", "", svg)  # the declaration is not allowed inside HTML
    elif entry["type"] == "image":
        body = f'<img alt="{html.escape(title)}" src="{data_uri(Path(entry["url"]))}">'
    else:
        body = f"<p>plot type {html.escape(entry['type'])} is not supported offline</p>"
    return f'<figure class="plot">{body}<figcaption>{html.escape(revisions)}</figcaption></figure>'


def page_html(plots: dict, errors: list[dict], heading: str, svg_dir: Path) -> str:
    """The whole page: a contents list, then one section per plot title in dvc.yaml order."""
    failed: dict[str, list[str]] = {}
    for error in errors:
        failed.setdefault(error.get("name", ""), []).append(
            f"{error.get('rev', '?')}: {error.get('source', '')} {error.get('type', '')} {error.get('msg', '')}")
    sections, contents = [], []
    for number, (title, entries) in enumerate(plots.items()):
        anchor = f"plot-{number}"
        contents.append(f'<li><a href="#{anchor}">{html.escape(title)}</a></li>')
        figures = [figure_html(entry, svg_dir, title) for entry in entries]
        problems = [f'<p class="error">not drawn: {html.escape(text)}</p>' for text in failed.get(title, [])]
        sections.append(f'<section id="{anchor}" data-plot="{html.escape(title)}"><h2>{html.escape(title)}</h2>'
                        + "".join(figures + problems) + "</section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{html.escape(heading)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
figure.plot {{ display: inline-block; vertical-align: top; margin: 0 1.5em 1.5em 0; }}
figure.plot img {{ max-width: 100%; }}
figure.plot > svg {{ overflow: visible; }}  /* vl-convert measured text in its own font */
figcaption {{ color: #555; font-size: 0.9em; }}
.error {{ color: #b00; }}
</style></head>
<body><h1>{html.escape(heading)}</h1>
<ul>{"".join(contents)}</ul>
{"".join(sections)}
</body></html>
"""


def main(argv: list[str] | None = None) -> None:
    """Write the offline page (and one SVG per Vega-Lite plot) for the workspace or revisions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="*", help="git revisions or experiment names to compare (dvc plots diff)")
    parser.add_argument("--out", type=Path, default=Path("dvc_plots/offline.html"), help="HTML page to write")
    parser.add_argument("--svg-dir", type=Path, default=None,
                        help="folder for one SVG per Vega-Lite plot (default: <out folder>/svg)")
    parser.add_argument("--repo", type=Path, default=Path("."), help="DVC repository to read the plots of")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    svg_dir = args.svg_dir or args.out.parent / "svg"
    svg_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dvc-plots-") as images_dir:
        try:
            report = dvc_plots_json(args.revisions, Path(images_dir).resolve(), args.repo)
        except RuntimeError as error:  # a bad revision or no DVC repo: DVC's message, without a traceback
            parser.exit(2, f"{error}\nRevisions are git commits, branches, tags or experiment names "
                           "(`dvc exp list`); run from the project folder or pass --repo.\n")
        for error in report.get("errors", []):
            log.warning("plot %s not drawn for %s: %s", error.get("name"), error.get("rev"), error.get("msg"))
        shown = dict.fromkeys(rev for entries in report.get("data", {}).values() for entry in entries
                              for rev in entry.get("revisions", []))  # `diff A` also shows the workspace
        heading = "DVC plots: " + (" vs ".join(shown) or "none")
        page = page_html(report.get("data", {}), report.get("errors", []), heading, svg_dir)
    with atomic_path(args.out) as temp_path:
        temp_path.write_text(page, encoding="utf-8")
    log.info("wrote %s: %d plots, %.1f MB, %.1f s", args.out, len(report.get("data", {})),
             len(page.encode()) / 1e6, time.monotonic() - started)


if __name__ == "__main__":
    main()
