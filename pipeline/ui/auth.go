package ui

import (
	"net/http"
	"net/url"
	"strings"
)

// cookieName holds a browser's API token (see the package doc).
const cookieName = "featurepipe_token"

// cookieDays is how long the token cookie lives.
const cookieDays = 30

// token returns the token r presents in the cookie, "" if none.
func token(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

func (u *UI) setCookie(w http.ResponseWriter, r *http.Request, tok string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// secureHeaders: only this server's own script and stylesheet run (no
// inline script, nothing from elsewhere; the favicon is a data: URL), pages
// are not framed, and the token-bearing referrer stays on this site.
func secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
}

// authed wraps a handler: without Tokens every request passes; with them,
// ?token= is checked, stored in the cookie and stripped by a redirect, and
// a request without a valid cookie gets the login page (401).
func (u *UI) authed(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		if u.o.Tokens == nil {
			h(w, r)
			return
		}
		q := r.URL.Query()
		if tok := q.Get("token"); tok != "" && r.Method == http.MethodGet {
			if _, ok := u.o.Tokens.Consumer(tok); !ok {
				u.login(w, r, http.StatusUnauthorized, "That token is not valid for this service.")
				return
			}
			u.setCookie(w, r, tok, cookieDays*86400)
			q.Del("token")
			to := *r.URL
			to.RawQuery = q.Encode()
			http.Redirect(w, r, to.RequestURI(), http.StatusSeeOther)
			return
		}
		if _, ok := u.o.Tokens.Consumer(token(r)); !ok {
			if strings.HasPrefix(r.URL.Path, "/ui/api/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":{"code":"missing_token","message":"sign in at /ui/login with an API token"}}` + "\n"))
				return
			}
			u.login(w, r, http.StatusUnauthorized, "")
			return
		}
		h(w, r)
	})
}

// handleLogin shows the token form (GET) or checks it and sets the cookie
// (POST), then goes to the page the form came from (a /ui/ path only).
func (u *UI) handleLogin(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w)
	if r.Method == http.MethodGet {
		u.login(w, r, http.StatusOK, "")
		return
	}
	if u.o.Tokens == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if _, ok := u.o.Tokens.Consumer(tok); !ok {
		u.login(w, r, http.StatusUnauthorized, "That token is not valid for this service.")
		return
	}
	u.setCookie(w, r, tok, cookieDays*86400)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

// safeNext keeps a redirect target inside the UI.
func safeNext(next string) string {
	p, err := url.Parse(next)
	if err != nil || p.Host != "" || p.Scheme != "" || !strings.HasPrefix(p.Path, Prefix) || strings.HasPrefix(p.Path, "/ui/login") {
		return Prefix
	}
	return p.RequestURI()
}

func (u *UI) handleLogout(w http.ResponseWriter, r *http.Request) {
	u.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

func (u *UI) login(w http.ResponseWriter, r *http.Request, status int, problem string) {
	to := *r.URL
	q := to.Query()
	q.Del("token") // never echo a token into the form
	to.RawQuery = q.Encode()
	next := to.RequestURI()
	if r.URL.Path == "/ui/login" {
		next = r.FormValue("next")
	}
	u.render(w, status, "login", page{Title: "Sign in", Data: struct {
		Problem, Next string
		Open          bool
	}{problem, safeNext(next), u.o.Tokens == nil}})
}
