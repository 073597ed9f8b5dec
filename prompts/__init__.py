"""The shipped judge templates, one TOML file each.

pyproject.toml installs this folder as the package `rmb_judge.prompts`, so the templates are
package data: `rmb_judge.templates` finds them with importlib.resources, in an editable
install and in a wheel alike. This file only makes the folder a regular package (setuptools'
editable finder does not map a nested folder without one).
"""
