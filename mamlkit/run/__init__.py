"""Running the course's experiments: training, saved models, the command line.

===============  ==============================================================================
``train``        ``TrainConfig`` and ``Trainer``: meta-training a network, resumable, logged
``checkpoints``  safe, atomic saving and loading of run state and weights
``presets``      named settings (the paper's Table 1 rows, the 4-minute preset)
``distributed``  one meta-batch shared by several processes (``torchrun``)
``publish``      a trained run exported with its manifest, for the course's assets
``plotting``     the learning-curve figure of a run
``cli``          ``python -m mamlkit train | evaluate | export | data | bench``
===============  ==============================================================================
"""
