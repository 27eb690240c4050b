//go:build race

package mesh

// raceEnabled: the reference mesh has data races of its own, which would
// fail any test that runs it in this process under the race detector.
const raceEnabled = true
