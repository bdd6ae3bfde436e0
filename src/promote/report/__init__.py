"""Reports: the Report object (model.py) and its renderings (render.py)."""
