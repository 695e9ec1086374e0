"""Generators of the data files this repository ships, so each can be made again and checked:

- :mod:`tools.render_demo_scene`: the demo's RGB-D scene (``demo/scene``);
- :mod:`tools.make_demo_adapter`: the demo's toy adapter for the tiny model
  (``demo/red_box_adapter``);
- :mod:`tools.render_overlay_examples`: the overlays of the example photos
  (``fixtures/photos/overlays``, compared with ``draw_overlay``'s output by test_visualization.py).

Run them from the lisa_ros package folder, e.g. ``cd lisa_ros && ../.venv/bin/python -m
tools.render_demo_scene``. The tests check that the committed files are what they write.
"""
