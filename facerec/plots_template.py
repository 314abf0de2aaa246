"""The HTML template of `dvc plots show` / `dvc plots diff`, with Vega, Vega-Lite and Vega-Embed inside.

DVC's default page loads the three libraries from a CDN, so offline it stays blank. This template
carries them inline, read from the pinned PyPI package django-js-lib-vega-embed (the libraries'
own UMD builds, no Django needed), so every page DVC writes opens without network.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources

from facerec.errors import PipelineInputError

PACKAGE = "django-js-lib-vega-embed"
# The same major versions as DVC's renderer (vega@5, vega-lite@5, vega-embed@6); newer minors.
SCRIPTS = {"Vega": "vega5.js", "Vega-Lite": "vega-lite5.js", "Vega-Embed": "vega-embed6.js"}
# Scripts may only be inline (ours and DVC's per-plot ones); Vega compiles expressions with
# Function(), hence 'unsafe-eval'. Images come from DVC's dvc_plots/static/ (file:) or data:.
# No http(s) source and connect-src 'none': nothing can leave the machine, even by mistake.
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src file: data: blob:; connect-src 'none'")
# DVC calls vegaEmbed(element, spec) per plot. SVG instead of canvas: text stays sharp when zoomed
# or printed. No "Open in Vega Editor" action: it would post the data to a web site.
EMBED_DEFAULTS = """
const embedWithoutDefaults = vegaEmbed;
window.vegaEmbed = (element, spec, options) => embedWithoutDefaults(element, spec, {
  renderer: "svg", actions: {export: true, source: true, compiled: true, editor: false}, ...options});
"""
STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-spacing: 15px; }
"""
# DVC fills {plot_divs} and {refresh_tag}; {scripts} (its CDN <script> tags) is left out on purpose.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{{refresh_tag}}
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>DVC plots</title>
<!-- {provenance} -->
{scripts}
<style>{style}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def library_sources() -> dict[str, str]:
    """The JavaScript of each library, read from the installed package."""
    try:
        folder = importlib.resources.files("js_lib_vega_embed") / "static" / "js_lib_vega_embed"
        return {name: (folder / file_name).read_text(encoding="utf-8") for name, file_name in SCRIPTS.items()}
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise PipelineInputError(
            f"the offline plots page needs the Vega scripts of the {PACKAGE} package ({error}); "
            "install the project's requirements: pip install -r requirements.txt") from error


def inline_script(source: str) -> str:
    """A <script> element holding `source`; refuses code that would end the element early."""
    if "</script" in source.lower():
        raise ValueError("script contains '</script', which would end the inline <script> element")
    return f"<script>{source}</script>"


def page_template() -> str:
    """The whole template: DVC's placeholders, the three libraries and the embed defaults."""
    sources = library_sources()
    for name, source in sources.items():
        for placeholder in ("{scripts}", "{plot_divs}", "{refresh_tag}"):
            if placeholder in source:  # DVC would replace it inside the library's code
                raise ValueError(f"{name} contains DVC's placeholder {placeholder}")
    provenance = f"{', '.join(SCRIPTS)} from the PyPI package {PACKAGE} {importlib.metadata.version(PACKAGE)}"
    scripts = "\n".join([*(inline_script(source) for source in sources.values()), inline_script(EMBED_DEFAULTS)])
    return PAGE.format(csp=CSP, provenance=provenance, scripts=scripts, style=STYLE)
