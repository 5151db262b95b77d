"""Chapter 3 exercises: reference solutions, for instructors.
The checkers are :func:`prefkit.course.ch3_classical_rlhf.grade_reinforce_loss` and ``grade_rloo_advantages``;
notebook 03's exercise cell (``attempt``) checks these solutions
while a student's stub is not done, where this folder is present.

Exercise 1: implement the REINFORCE loss −mean(logp·A) with A treated as a constant.
Exercise 2: implement RLOO advantages A_i = r_i − mean_{j≠i} r_j.
"""

__all__ = ["reinforce_loss", "rloo_advantages"]


def reinforce_loss(logp, advantages):
    """Reference solution: the score-function surrogate; detach A so no gradient flows into it."""
    return -(logp * advantages.detach()).mean()


def rloo_advantages(rewards):
    """Reference solution: each sample's baseline is the mean of the other k − 1 rewards."""
    k = rewards.shape[-1]
    return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
