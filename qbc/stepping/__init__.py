"""Stepping actors in environments: the one ``Actor`` protocol (:mod:`qbc.stepping.actor`), the
one batched loop (:mod:`qbc.stepping.loop`) and what a rollout of an env can claim
(:mod:`qbc.stepping.limits`). Envs are made by :mod:`qbc.envs.make`.

Experts (:mod:`qbc.agents`), data collection and the rollouts all step envs through this
package, so it sits below them."""
