"""{{ cookiecutter.project_description }}"""
