"""Record a Maze2D-style offline dataset on gymnasium-robotics' PointMaze and write it as .npz.

    python datasets/build_pointmaze.py --maze umaze --steps 200000 --seed 0 --out umaze.npz
    python datasets/build_pointmaze.py --maze medium                # default steps, into the cache

The data collection (noisy waypoint controller, random goals, continuing task) is described in
multidiff/data/trajectory.py. The file holds observations, actions, rewards, terminals, timeouts
and goals, plus "params": the settings and library versions as a JSON string (no pickles); read it
with multidiff.data.trajectory.load_offline_dataset. Without --out the file goes where
load_maze_dataset looks for it ($MULTIDIFF_CACHE/trajectory/<maze>-<steps>-seed<seed>.npz), which
uses it when --noise and --episode-steps are left at their defaults (and makes it again if not).
Needs: pip install 'gymnasium>=1.0' 'gymnasium-robotics>=1.4' 'mujoco>=3'
"""

from __future__ import annotations

import argparse
import sys

from multidiff.data import trajectory as T


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maze", choices=list(T.MAZES), default="umaze")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps to record (default: " + ", ".join(f"{k} {v:,}" for k, v in
                                                                    T.DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=T.NOISE, help="std of the Gaussian action noise")
    parser.add_argument("--episode-steps", type=int, default=T.EPISODE_STEPS, help="steps between env resets")
    parser.add_argument("--out", default=None, help="output .npz (default: the cache file load_maze_dataset reads)")
    args = parser.parse_args(argv)
    try:
        dataset = T.generate_maze_dataset(args.maze, steps=args.steps, seed=args.seed, noise=args.noise,
                                          episode_steps=args.episode_steps, progress=True)
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    params = dataset["params"]
    out = args.out or T.maze_cache_path(args.maze, steps=params["steps"], seed=args.seed)
    path = T.save_dataset(out, dataset)
    stats = T.summary(dataset)
    timing = params["timing"]
    print(f"wrote {path}")
    print(f"{params['env_id']}: {stats['steps']:,} steps in {stats['episodes']} episodes of up to "
          f"{params['episode_steps']:,}, seed {params['seed']}, action noise {params['noise']}")
    print(f"goals reached: {stats['goals_reached']:,} ({stats['goals_reached'] / stats['steps'] * 1e5:.0f} per 100k "
          f"steps); mean speed {stats['mean_speed']:.2f}; sparse reward on {stats['reward_rate']:.1%} of steps")
    print(f"generation: {timing['seconds']:.1f} s, {timing['steps_per_second']:,.0f} steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
