package connection_test

import (
	"encoding/json"
	"fmt"
)

// fmtAll renders a value every way it might reach a person or a log.
func fmtAll(v any) string {
	j, _ := json.Marshal(v)
	return fmt.Sprintf("%v %+v %#v %s", v, v, v, j)
}
