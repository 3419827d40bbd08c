"""Stepping actors in environments: the one ``Actor`` protocol (:mod:`qbc.stepping.actor`),
making Gymnasium envs by id and their fastest vector version
(:mod:`qbc.stepping.environments`) and the one batched loop (:mod:`qbc.stepping.loop`).

Experts (:mod:`qbc.agents`), data collection and the rollouts all step envs through this
package, so it sits below them."""
