"""Trajectories for planning by diffusion, in the manner of Diffuser (Janner et al. 2022):
the trajectory domain's adapter, one concept per module.

==================  ================================================================
``normalizer``      :class:`Normalizer` (per feature, to model space) and the
                    ``[observation, action]`` rows it is fitted on
``arrival``         plans that arrive at a chosen step (the goal at rest after it), and
                    the feasibility test that picks the earliest
``denoiser``        the ``(B, H, D)`` denoiser of the temporal U-Net, the start and
                    goal conditions (inpainting masks, extra input channels), the
                    training loss on windows, value-guided sampling of plans
``networks``        the value model, the behaviour-cloning / inverse-dynamics MLP,
                    and their files in a run folder
``env``             the single gymnasium entry point (:func:`make_env`), observations,
                    and maze geometry (walls, cells, shortest paths)
``policies``        the experts that record the data and the baselines
``retime``          a plan's route re-timed to the fastest motion the data allows
``planner``         :class:`Planner`: Diffuser's planning loop in an env
``pictures``        plans and executed paths drawn over the maze
==================  ================================================================

Shapes: a trajectory is ``(B, H, S + A)`` in model space, rows ``[s_t, a_t]``. The episode
runner and its scores live with the other metrics (:mod:`multidiff.metrics.trajectory`).
gymnasium (and gymnasium-robotics for PointMaze) are imported only when an env is made.
"""

from .arrival import (ArrivalWindowLoss, WallProjection, arrival_channels, arrival_constraints, arrival_grid,
                      earliest_feasible, free_boxes, hold_after, out_of_walls, plan_violations, rest_row, timeline,
                      wall_hits)
from .denoiser import (TRAJECTORY_PRESETS, CallCounter, ConditionedDenoiser, TrajectoryDenoiser, WindowLoss,
                       backbone_config, condition_mask, constraints, sample_plans, value_guided, with_condition)
from .env import (MAZE_KWARGS, MAZES, PENDULUM_ID, MazeGeometry, MissingGymnasium, is_maze, make_env, make_maze_env,
                  maze_env_id, maze_geometry, shortest_path, split_observation)
from .networks import (BC_FILE, INVERSE_FILE, VALUE_FILE, BCNet, ValueModel, build_mlp, build_value_model, load_mlp,
                       load_value_model, returns_to_go, save_mlp, save_value_model)
from .normalizer import NORMALIZERS, Normalizer, step_rows
from .pictures import plan_png, plan_title
from .planner import TRACKING, Planner, PlannerSettings
from .policies import (BCPolicy, ControllerPolicy, D4RLWaypointController, NoisyControllerPolicy, RandomPolicy,
                       SwingUpController, WaypointController)
from .retime import motion_limits, retime_plan

__all__ = ["ArrivalWindowLoss", "BCNet", "BCPolicy", "BC_FILE", "CallCounter", "ConditionedDenoiser",
           "ControllerPolicy", "D4RLWaypointController", "INVERSE_FILE", "MAZES", "MAZE_KWARGS", "MazeGeometry",
           "MissingGymnasium", "NORMALIZERS", "NoisyControllerPolicy", "Normalizer", "PENDULUM_ID", "Planner",
           "PlannerSettings", "RandomPolicy", "SwingUpController", "TRACKING", "TRAJECTORY_PRESETS",
           "TrajectoryDenoiser", "VALUE_FILE", "ValueModel", "WallProjection", "WaypointController", "WindowLoss",
           "arrival_channels", "arrival_constraints", "arrival_grid", "backbone_config", "build_mlp",
           "build_value_model", "condition_mask", "constraints", "earliest_feasible", "free_boxes", "hold_after",
           "is_maze", "load_mlp", "load_value_model", "make_env", "make_maze_env", "maze_env_id", "maze_geometry",
           "motion_limits", "out_of_walls", "plan_png", "plan_title", "plan_violations", "rest_row", "retime_plan",
           "returns_to_go", "sample_plans", "save_mlp", "save_value_model", "shortest_path", "split_observation",
           "step_rows", "timeline", "value_guided", "wall_hits", "with_condition"]
