"""Export: one trial's architecture as a Hugging Face config, Megatron-LM arguments or YAML, to download."""

from __future__ import annotations

import io
import zipfile

import streamlit as st

from dashboard import common
from nas import reader, record

FORMATS = {
    "hf": "Hugging Face config",
    "megatron": "Megatron-LM arguments",
    "yaml": "YAML (architecture + training)",
}
LANGUAGES = {".json": "json", ".sh": "bash", ".yaml": "yaml", ".md": "markdown", ".txt": None}


def trial_options(meta, df) -> dict[int, str]:
    """Trials with an architecture, the Pareto front first: number -> label."""
    have = df[df["pattern"].notna() & (df["status"] != "infeasible")]
    first, d0 = meta.metrics[0], meta.directions[0]
    front = have[have["pareto"]].sort_values(first, ascending=d0 != "maximize")
    rest = have[~have["pareto"]].sort_values("number")
    out = {}
    for r in front.to_dict("records"):
        vals = "  ".join(f"{m} {common.num(r[m])}" for m in meta.metrics)
        out[int(r["number"])] = f"★ trial {r['number']}  {r['pattern'][:40]}  {vals}"
    for r in rest.to_dict("records"):
        out[int(r["number"])] = f"trial {r['number']} ({r['status']})  {r['pattern'][:40]}"
    return out


def zipped(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


st.title("Export")
URL = common.storage_url()
names = reader.study_names(URL)
if not names:
    st.info(f"No studies yet in `{common.shown(URL)}`: export needs a trial with an architecture.")
    st.stop()
name = common.pick_study(names)
version, meta, df = common.study_frame(URL, name)
options = trial_options(meta, df)
if not options:
    st.info("No trial of this study has an architecture yet.")
    st.stop()
wanted = st.query_params.get("trial")
numbers = list(options)
index = numbers.index(int(wanted)) if wanted and wanted.isdigit() and int(wanted) in options else 0
number = st.selectbox(
    "Trial (★ on the Pareto front)", numbers, index=index, format_func=options.get, key="trial"
)
st.query_params["trial"] = str(number)

from nas.export import hf_targets, render  # noqa: E402
from search_spaces import ArchConfig  # noqa: E402
from search_spaces.config import ConfigError  # noqa: E402

arch = reader.trial_attrs(URL, name, number, (record.ARCH,)).get(record.ARCH)
if arch is None:
    st.info(f"Trial {number} has no architecture recorded.")
    st.stop()
cfg = ArchConfig.from_dict(arch)
st.markdown(f"Pattern `{cfg.pattern}` · d_model {cfg.d_model} · vocabulary {cfg.vocab_size}")

c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
fmt = c1.radio("Format", list(FORMATS), format_func=FORMATS.get, horizontal=True, key="format")
scale_to = c2.text_input(
    "Scale to (parameters)",
    placeholder="as trained, or e.g. 1.5B",
    key="scale_to",
    help="the presets' scaling rule: the layer pattern kept, the width solved",
)
vocab = c3.number_input(
    "Vocabulary",
    min_value=0,
    value=0,
    step=1,
    key="vocab",
    help="0 keeps the proxy's; a real tokenizer's size, e.g. 32000",
)
kwargs: dict = {}
try:
    if scale_to.strip():
        from nas import units

        try:
            kwargs["scale_to"] = units.parse_count(scale_to)
        except ValueError as e:
            raise ConfigError(f"scale to: {e}") from None
    if vocab:
        kwargs["vocab_size"] = int(vocab)
    if fmt == "hf":
        targets = hf_targets(cfg)
        target = c4.selectbox(
            "Class",
            ["best fit", *targets],
            key="target",
            help="the transformers model types that can express this pattern",
        )
        if target != "best fit":
            kwargs["target"] = target
    files = render(cfg, fmt, **kwargs)
except ConfigError as e:
    st.error(f"error: {e}")
    st.stop()

st.download_button(
    f"Download all ({len(files)} files, zip)",
    zipped(files),
    file_name=f"{name}-trial-{number}-{fmt}.zip",
    mime="application/zip",
    icon=":material/download:",
    type="primary",
)
for fname, text in files.items():
    with st.expander(fname, expanded=fname != "README.md"):
        st.download_button(
            f"Download {fname}", text, file_name=fname, key=f"dl_{fname}", icon=":material/download:"
        )
        suffix = fname[fname.rfind(".") :]
        st.code(text, language=LANGUAGES.get(suffix))
st.caption(
    f"The same files as `nas export --study {name} --trial {number} --format {fmt}"
    + (f" --scale-to {scale_to.strip()}" if scale_to.strip() else "")
    + (f" --vocab-size {int(vocab)}" if vocab else "")
    + (f" --target {kwargs['target']}" if "target" in kwargs else "")
    + " --out DIR`."
)
