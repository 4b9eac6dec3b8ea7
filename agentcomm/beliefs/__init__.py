"""Probabilistic representations the agents hold and share.

* :mod:`~agentcomm.beliefs.grid`: log-odds occupancy grids ``[B, N, H, W]``, the
  range-limited binary sensor and Bayes' rule (dense and sensing-window paths).
* :mod:`~agentcomm.beliefs.gaussian`: Gaussian beliefs and the Kalman filter for tracking.
* :mod:`~agentcomm.beliefs.fusion`: independent, conservative (geometric mean, covariance
  intersection), consensus and fusion-centre fusion.
"""

from __future__ import annotations

from agentcomm.beliefs.fusion import (
    consensus_average,
    covariance_intersection,
    fusion_centre_logodds,
    independent_gaussian_fusion,
    independent_logodds_sum,
    weighted_logodds_average,
)
from agentcomm.beliefs.gaussian import (
    GaussianBelief,
    constant_velocity_model,
    kalman_predict,
    kalman_update,
    position_measurement_model,
)
from agentcomm.beliefs.grid import (
    WindowObservation,
    bayes_update,
    bayes_update_window,
    cell_centres,
    cell_index,
    entropy,
    kl_to_truth,
    mse_to_truth,
    prior_logodds,
    probability,
    sense,
    sense_window,
    sensor_increments,
    window_cells,
    window_offsets,
    window_table,
)

__all__ = [
    "GaussianBelief",
    "WindowObservation",
    "bayes_update",
    "bayes_update_window",
    "cell_centres",
    "cell_index",
    "consensus_average",
    "constant_velocity_model",
    "covariance_intersection",
    "entropy",
    "fusion_centre_logodds",
    "independent_gaussian_fusion",
    "independent_logodds_sum",
    "kalman_predict",
    "kalman_update",
    "kl_to_truth",
    "mse_to_truth",
    "position_measurement_model",
    "prior_logodds",
    "probability",
    "sense",
    "sense_window",
    "sensor_increments",
    "weighted_logodds_average",
    "window_cells",
    "window_offsets",
    "window_table",
]
