"""No value can inject a Dockerfile instruction: newlines, backslash continuations and quotes
are escaped or refused by render's filters, and the result parses as intended."""

from __future__ import annotations

import dockerfile as buildkit
import pytest

from bundler.render import UnsafeValue, exec_form, quoted, word


def unquote(raw: str) -> str:
    """BuildKit's reading of a double-quoted word: backslash escapes the next character."""
    assert raw.startswith('"') and raw.endswith('"'), raw
    out, chars = [], iter(raw[1:-1])
    for char in chars:
        out.append(next(chars) if char == "\\" else char)
    return "".join(out)


@pytest.mark.parametrize(
    "value, rendered",
    [
        ('say "hi"', '"say \\"hi\\""'),
        ("$HOME and ${PATH}", '"\\$HOME and \\${PATH}"'),
        ("ends with a backslash\\", '"ends with a backslash\\\\"'),
        ("plain", '"plain"'),
    ],
)
def test_quoted_escapes_quotes_dollars_and_backslashes(value, rendered):
    assert quoted(value) == rendered
    parsed = buildkit.parse_string(f"FROM scratch\nENV KEY={rendered}\nLABEL after=1\n")
    assert [c.cmd for c in parsed] == ["FROM", "ENV", "LABEL"]  # nothing swallowed, nothing added
    key, raw = parsed[1].value
    assert (key, unquote(raw)) == ("KEY", value)


@pytest.mark.parametrize("value", ["line\nRUN rm -rf /", "carriage\rreturn", "nul\x00byte", "tab\tis control"])
def test_quoted_refuses_control_characters(value):
    with pytest.raises(UnsafeValue):
        quoted(value)


@pytest.mark.parametrize("value", ["python:3.11\nRUN evil", "a b", 'x"y', "back\\", "$(id)", ""])
def test_word_refuses_anything_but_a_plain_token(value):
    with pytest.raises(UnsafeValue):
        word(value)


def test_exec_form_is_json_and_refuses_newlines():
    assert exec_form(["python", "-m", 'a"b']) == '["python", "-m", "a\\"b"]'
    with pytest.raises(UnsafeValue):
        exec_form(["python", "x\nRUN evil"])


def test_entry_script_name_with_quotes_and_dollars_stays_one_env_value(tmp_path, cli, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    name = 'we"ird $name\\.py'
    script = "def init():\n    pass\ndef run(raw):\n    return raw\n"
    (src / name).write_text(script)
    (src / "plain.py").write_text(script)
    (tmp_path / "m.bin").write_bytes(b"m")
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "m")

    def instructions(out: str, entry: str):
        result = cli("save", out, "--model", "m", "--source-dir", "src", "--entry-script", entry)
        assert result.exit_code == 0, result.output
        return buildkit.parse_file(str(tmp_path / out / "Dockerfile"))

    weird, plain = instructions("weird", name), instructions("plain", "plain.py")
    env = [c for c in weird if c.cmd == "ENV"]
    assert len(env) == 1
    pairs = dict(zip(env[0].value[::2], env[0].value[1::2]))
    assert unquote(pairs["AZUREML_ENTRY_SCRIPT"]) == name
    # Nothing injected: the same instructions, in the same order, as with a plain name.
    assert [c.cmd for c in weird] == [c.cmd for c in plain]


def test_entry_script_name_with_a_newline_is_refused(tmp_path, cli, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    name = "score\nRUN evil.py"
    (src / name).write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "m")
    result = cli("save", "out", "--model", "m", "--source-dir", "src", "--entry-script", name)
    assert result.exit_code == 2
    assert "cannot enter the Dockerfile" in result.output
    assert not (tmp_path / "out").exists()


def test_user_template_runs_sandboxed(tmp_path, cli, monkeypatch):
    """A template is code: the sandbox stops it from reaching Python internals."""
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    (tmp_path / "evil.jinja").write_text(
        '{% extends "Dockerfile.jinja" %}{% block header %}'
        "{{ plan.__class__.__init__.__globals__['os'].system('touch pwned') }}{% endblock %}"
    )
    (tmp_path / "bundler.toml").write_text('[dockerfile]\ntemplate = "evil.jinja"\n')
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "m")
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py")
    assert result.exit_code == 2 and "your Dockerfile template" in result.output
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_user_template_undefined_name_is_an_error(tmp_path, cli, monkeypatch):
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    (tmp_path / "t.jinja").write_text(
        '{% extends "Dockerfile.jinja" %}{% block extra_setup %}RUN echo {{ plan.no_such_field }}{% endblock %}'
    )
    (tmp_path / "bundler.toml").write_text('[dockerfile]\ntemplate = "t.jinja"\n')
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "m")
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py")
    assert result.exit_code == 2 and "no_such_field" in result.output
