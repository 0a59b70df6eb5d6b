package trigger

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// verifyTimestamped checks a signature header of the "t=<unix
// seconds>,v1=<hex>[,v1=<hex>…]" scheme Stripe uses (and the sandbox after
// it): one v1 must be the hex HMAC-SHA256 of "<t>.<body>" under secret,
// and t within tolerance of the delivery's arrival. name is the header's
// name, for the error.
func verifyTimestamped(d Delivery, name, secret string, tolerance time.Duration) error {
	h := d.Header.Get(name)
	if h == "" {
		return fmt.Errorf("the delivery carries no %s header", name)
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%s carries no timestamp", name)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%s carries no v1 signature", name)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(d.Body)
	want := mac.Sum(nil)
	match := false
	for _, s := range sigs {
		match = hmac.Equal(s, want) || match
	}
	if !match {
		return fmt.Errorf("no %s v1 signature matches", name)
	}
	if diff := d.Now.Sub(time.Unix(sec, 0)); diff > tolerance || diff < -tolerance {
		return fmt.Errorf("the %s timestamp is more than %s away", name, tolerance)
	}
	return nil
}

var errNoSecret = errors.New("no signing secret is kept for this subscription")
