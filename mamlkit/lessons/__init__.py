"""The experiments and figures of the notebooks: each module backs one section.

Autograd and the loops written out (notebooks 01–03): ``autograd_warmups``,
``maml_from_scratch``, ``curvature``, ``quadratic_toy``, ``memory_cost``, ``meta_overfitting``,
``sine_experiment``, ``baseline``. Omniglot and MAML's neighbours (04–05): ``transfer_baseline``,
``feature_reuse``, ``neighbours``, ``paper_table``, ``intervals``. Figures: ``sine_plots``,
``omniglot_plots``, ``theory_plots``. Notebook helpers: ``checks`` (the asserts the notebooks
run), ``notebook`` (where ``mamlkit`` is imported from, the smoke switch).
"""
