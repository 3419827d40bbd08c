"""Rolling policies out against the expert: coupled rollouts from the same initial states and
noise, horizon metrics and the growth fit (:mod:`qbc.rollout.coupled`), model-based deployment
(:mod:`qbc.rollout.augment`), rollout videos (:mod:`qbc.rollout.video`) and plots of horizon
error (:mod:`qbc.rollout.plots`)."""
