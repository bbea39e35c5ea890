/**
 * The portal's one script: the browser half of the WebAuthn ceremonies. It runs only on pages
 * with a `#pk` button, asks `/.portcullis/passkey` for options, hands them to
 * navigator.credentials.create/get (base64url <-> ArrayBuffer), posts the answer back, and goes
 * where the server says. No framework, no third-party origin; allowed by its hash in the CSP.
 */
import { createHash } from 'node:crypto';

export const PASSKEY_SCRIPT = `(function(){
var b=document.getElementById('pk');if(!b)return;
var st=document.getElementById('pk-status');
function buf(s){s=s.replace(/-/g,'+').replace(/_/g,'/');while(s.length%4)s+='=';var r=atob(s),a=new Uint8Array(r.length);for(var i=0;i<r.length;i++)a[i]=r.charCodeAt(i);return a.buffer}
function b64(x){var a=new Uint8Array(x),s='';for(var i=0;i<a.length;i++)s+=String.fromCharCode(a[i]);return btoa(s).replace(/\\+/g,'-').replace(/\\//g,'_').replace(/=+$/,'')}
function post(f){return fetch('/.portcullis/passkey',{method:'POST',credentials:'same-origin',headers:{'content-type':'application/x-www-form-urlencoded'},body:new URLSearchParams(f)}).then(function(r){return r.json().then(function(j){if(!r.ok)throw new Error(j.error||'refused');return j})})}
function go(){
var mode=b.getAttribute('data-mode'),csrf=b.getAttribute('data-csrf'),then=b.getAttribute('data-then')||'',n=document.getElementById('pk-name');
if(!window.PublicKeyCredential){st.textContent='This browser does not support passkeys.';return}
st.textContent='';b.disabled=true;
post({csrf:csrf,op:mode+'-options'}).then(function(o){var p=o.options;p.challenge=buf(p.challenge);
if(mode==='register'){p.user.id=buf(p.user.id);(p.excludeCredentials||[]).forEach(function(c){c.id=buf(c.id)});
return navigator.credentials.create({publicKey:p}).then(function(c){var r=c.response;return{id:c.id,rawId:b64(c.rawId),type:c.type,response:{clientDataJSON:b64(r.clientDataJSON),attestationObject:b64(r.attestationObject),transports:r.getTransports?r.getTransports():[]},clientExtensionResults:c.getClientExtensionResults(),authenticatorAttachment:c.authenticatorAttachment||undefined}})}
(p.allowCredentials||[]).forEach(function(c){c.id=buf(c.id)});
return navigator.credentials.get({publicKey:p}).then(function(c){var r=c.response;return{id:c.id,rawId:b64(c.rawId),type:c.type,response:{clientDataJSON:b64(r.clientDataJSON),authenticatorData:b64(r.authenticatorData),signature:b64(r.signature),userHandle:r.userHandle?b64(r.userHandle):undefined},clientExtensionResults:c.getClientExtensionResults(),authenticatorAttachment:c.authenticatorAttachment||undefined}})
}).then(function(c){return post({csrf:csrf,op:mode,then:then,name:n?n.value:'',response:JSON.stringify(c)})}).then(function(j){location.assign(j.next)}).catch(function(e){b.disabled=false;st.textContent=e&&e.name==='NotAllowedError'?'The passkey request was cancelled or timed out. Try again.':'That did not work: '+(e&&e.message?e.message:'error')+'.'})}
b.addEventListener('click',go);
})();`;

export const PASSKEY_SCRIPT_HASH = createHash('sha256').update(PASSKEY_SCRIPT).digest('base64');
