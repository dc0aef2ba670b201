package store

import (
	"fmt"
	"slices"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Transitions is a state machine: the states an object in each state may
// move to. Staying in a state is no move, and always allowed.
type Transitions[S ~string] map[S][]S

// Check refuses a move of kind id from one state to another the machine
// does not list, with an error wrapping errdefs.ErrFailedPrecondition.
func (m Transitions[S]) Check(kind, id string, from, to S) error {
	if from == to || slices.Contains(m[from], to) {
		return nil
	}
	return fmt.Errorf("%s %s is %s, and cannot become %s: %w", kind, id, from, to, errdefs.ErrFailedPrecondition)
}

// Moves lists the machine's moves as "from -> to", sorted.
func (m Transitions[S]) Moves() []string {
	var moves []string
	for from, tos := range m {
		for _, to := range tos {
			moves = append(moves, fmt.Sprintf("%s -> %s", from, to))
		}
	}
	slices.Sort(moves)
	return moves
}
