"""The README's first lines are the two set-up commands, and it documents every setting."""

from pathlib import Path

from stock_assets.settings import SETTINGS_DOC, settings_markdown

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_first_lines_hold_the_two_commands():
    head = README.splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_every_setting_is_documented():
    missing = [name for name in SETTINGS_DOC if f"`{name}`" not in README]
    assert not missing, f"README's configuration table lacks {missing}"


def test_configuration_table_is_generated_from_the_settings():
    """The README's table is `python -m stock_assets.settings`, byte for byte."""
    assert settings_markdown() in README, "regenerate it: make settings-doc"
