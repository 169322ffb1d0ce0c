"""Submit: paste or upload a spec, validate it as `nas run` does, then queue it (service) or start it here."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import auth, common


def template() -> str:
    import nas

    text = (Path(nas.__file__).parent / "studies" / "demo.yaml").read_text()
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):  # the demo's own header
        lines.pop(0)
    return "# A study spec, the YAML `nas run` takes (this one is the demo's, renamed)\n" + "".join(
        lines
    ).replace("name: demo\n", "name: my-study\n", 1)


def load_file() -> None:
    from search_spaces.config import MAX_CONFIG_BYTES

    f = st.session_state.get("spec_file")
    if f is not None:
        if f.size > MAX_CONFIG_BYTES:
            st.session_state.spec_text = (f"# {f.name} is {f.size / 1024:,.0f} KB, over the limit of "
                                          f"{MAX_CONFIG_BYTES // 1024} KB for a spec\n")
        else:
            st.session_state.spec_text = f.getvalue().decode("utf-8", errors="replace")
        st.session_state.spec_where = f"study spec {f.name}"


def edited() -> None:
    st.session_state.spec_where = "the spec"


def check(text: str, where: str, files: bool = True):
    """The spec, validated exactly as `nas run` validates a file; ConfigError with its one sentence if not.
    `files=False`: a spec naming a file (a space, a profile) is refused, not read on this server."""
    from nas.spec import spec_from_text

    return spec_from_text(text, where, files=files)


def existing(spec, url: str) -> str | None:
    """'resumes' for a compatible study of that name, None for a new one; ConfigError if it clashes."""
    from nas import store
    from search_spaces.config import ConfigError

    where = spec.storage or url
    try:
        h = store.load(spec.name, where)
    except ConfigError as e:
        if "no study named" in str(e):
            return None
        raise
    store.check_resumable(spec, store.stored_spec(h.study))
    return "resumes"


def summary(spec) -> str:
    space = spec.space if isinstance(spec.space, str) else (spec.space or {}).get("name", "an inline space")
    what = (
        f"ablation of {spec.ablation.base if isinstance(spec.ablation.base, str) else 'an inline base'}"
        if spec.kind == "ablation"
        else f"search over **{space}**"
    )
    budget = ", ".join(
        x
        for x in (
            f"{spec.budget.trials} trials" if spec.budget.trials else "",
            f"{spec.budget.hours} h" if spec.budget.hours else "",
        )
        if x
    )
    objectives = ", ".join(f"{m} ({d[:3]})" for m, d in zip(spec.metrics, spec.directions, strict=False))
    return (
        f"**{spec.name}**: {what}; objectives {objectives}; sampler {spec.sampler_name()}; budget {budget}; "
        f"profile {spec.profile if isinstance(spec.profile, str) else 'inline'}; "
        f"concurrency {spec.concurrency}."
    )


st.title("Submit a study")
m = common.mode()
url = common.storage_url()
who = auth.actor(m.service)
if who is None:
    auth.refuse("validate and submit studies")
if m.service:
    st.markdown("A valid spec goes to the **queue**; the scheduler (`nas serve`) runs the queue by priority.")
else:
    st.markdown(
        "A valid spec **starts here**, as a background `nas run` on this machine "
        f"(spec and log under `{common.submitted_dir()}/`); it appears on the Studies page as it runs."
    )

if "spec_text" not in st.session_state:
    st.session_state.spec_text = template()
    st.session_state.spec_where = "the spec"
st.file_uploader("Upload a spec (YAML)", type=["yaml", "yml"], key="spec_file", on_change=load_file,
                 max_upload_size=1)
text = st.text_area(
    "Spec",
    key="spec_text",
    height=420,
    on_change=edited,
    help="The same YAML as `nas run` takes; see the README for every field.",
)
where = st.session_state.get("spec_where", "the spec")
if m.service:
    c1, c2 = st.columns(2)
    priority = c1.number_input("priority", value=0, step=1, help="higher runs first")
    c2.markdown(f"submitted by **{who}** (signed in)")
b1, b2, _ = st.columns([1, 1, 4])
validate = b1.button("Validate", icon=":material/check:")
go = b2.button("Submit to the queue" if m.service else "Start", type="primary", icon=":material/play_arrow:")

if validate or go:
    from search_spaces.config import ConfigError

    try:
        spec = check(text, where, files=auth.local(m.service))  # no file of this server for a remote user
        if spec.storage and spec.storage != url and not m.service:
            st.warning(
                f"This spec writes to `{common.shown(spec.storage)}`, and this dashboard reads "
                f"`{common.shown(url)}`: the study will not appear here."
            )
        resumes = existing(spec, url) if not m.service else None
        if validate:
            st.success(
                "Valid. "
                + summary(spec)
                + (" A study of this name exists: running it resumes it." if resumes else "")
            )
        else:
            if m.service:
                qid = m.queue.submit(spec, priority=int(priority), submitted_by=who)
                st.success(f"Queued **{spec.name}** as #{qid}.")
            else:
                run = common.start_local(spec, text)
                st.success(
                    f"Started **{spec.name}** ({'resuming it' if resumes else 'a new study'}) as process "
                    f"{run.pid}. Its log: `{run.log}`; its spec: `{run.spec}`."
                )
            st.page_link("views/studies.py", label="See it on the Studies page", icon=":material/table_rows:")
    except ConfigError as e:
        st.error(f"error: {e}")
