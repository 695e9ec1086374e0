"""The command-line tools: ``lisa-segment`` (:mod:`.segment`: one image through the model),
``lisa-eval`` (:mod:`.evaluate`: a dataset, scored as the LISA authors score it), ``lisa-finetune``
(:mod:`.finetune`: a LoRA adapter) and ``lisa-ask`` (:mod:`.ask`: one instruction to a running
lisa_node), with what they share: the model options and their load (:mod:`.options`) and the files
they read and write (:mod:`.files`: images, ``overlay.png``, ``mask_<k>.png``, ``result.json``).

Each tool is a console script and runs as ``python -m lisa_ros.cli.<tool>`` (``torchrun`` and
``accelerate launch`` start ``lisa_ros.cli.evaluate`` and ``lisa_ros.cli.finetune`` so). Only
``lisa-ask`` needs rclpy; the others run without ROS.
"""
